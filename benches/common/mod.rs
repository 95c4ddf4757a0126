//! Shared by the pipeline benches: real records and configs.

#![allow(dead_code)] // each bench uses a subset

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use logrelay::config::Config;
use logrelay::record::Record;

/// Records per batch: what one 64 KiB read holds (~450-byte frames).
pub const BATCH: usize = 145;

/// The 500 real SocketHandler frames of `tests/fixtures/pickle/bench.bin`
/// (length prefixes removed), sliced from one buffer as the framer would
/// hand them over.
pub fn frames() -> Vec<Bytes> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pickle/bench.bin"
    );
    let all = Bytes::from(std::fs::read(path).expect("read bench.bin"));
    let mut out = Vec::new();
    let mut off = 0;
    while off + 4 <= all.len() {
        let len = u32::from_be_bytes([all[off], all[off + 1], all[off + 2], all[off + 3]]) as usize;
        out.push(all.slice(off + 4..off + 4 + len));
        off += 4 + len;
    }
    out
}

/// Those frames decoded (strings borrow from the frames, as in the
/// listener).
pub fn records() -> Vec<Record> {
    frames()
        .iter()
        .map(|f| Record::new(logrelay::codec::pickle::decode(f).expect("decodes")))
        .collect()
}

/// A checked config from JSON text (paths in it should be absolute).
pub fn config(json: &str) -> Arc<Config> {
    let cfg = logrelay::config::load::parse(json, Path::new("/tmp/bench.json"))
        .unwrap_or_else(|e| panic!("bench config: {e}"));
    Arc::new(cfg)
}

/// The cookbook listener's format.
pub const COOKBOOK_FORMAT: &str = "%(asctime)s %(levelname)-8s %(name)s %(process)d %(message)s";
