//! logrelay: a log listener and router for Python's `logging.handlers.SocketHandler`.
//!
//! A record flows through the modules in this order:
//!
//! 1. [`input`] accepts connections (TCP, Unix) or datagrams (UDP) and reads
//!    bytes into large buffers;
//! 2. [`codec::framing`] cuts frames out of the buffer without copying and a
//!    [`codec`] decoder (pickle, JSON, msgpack) turns each into a [`record::Record`];
//! 3. [`pipeline`] routes the batch of records (by input, logger prefix and
//!    level), runs each route's [`filter`]s, and hands batches to outputs,
//!    formatted into lines by [`mod@format`] (text) or [`codec::json`] where the
//!    line depends only on the record;
//! 4. [`output`] threads own their file or stream and write each batch with
//!    one system call.
//!
//! [`config`] reads `listener.json`; [`diagnose`] tries what start-up would
//! (for `check`) and says which config field a start-up error comes from; [`server::Server::reload`] swaps
//! pipelines live; [`server::Server::shutdown`] coordinates a graceful stop.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod diagnose;
pub mod dryrun;
pub mod filter;
pub mod format;
pub mod input;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod ratelimit;
pub mod record;
pub mod run;
pub mod server;
pub mod tls;
pub mod upgrade;
pub mod watch;
