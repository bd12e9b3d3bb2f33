//! Verify (placeholder).
