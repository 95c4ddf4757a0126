//! `logrelay tap`.
