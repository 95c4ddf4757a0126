//! The serde mirror of `listener.json` (placeholder).
