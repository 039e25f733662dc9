//! Throwaway slapd (placeholder; filled in by the harness work).
