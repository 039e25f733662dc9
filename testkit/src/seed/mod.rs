//! Seed data (placeholder; filled in by the seed work).
