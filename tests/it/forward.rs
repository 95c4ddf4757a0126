//! The forward output (issue 7).
