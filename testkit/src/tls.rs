//! Test certificates (placeholder; filled in by the harness work).
