//! Link-time layout: place the functions a running logrelay executes
//! (`layout/hot-functions.txt`, made by `layout/generate.py`) together at the
//! start of the binary's text, so that the kernel's fault-around maps about
//! 1 MiB of code instead of 5 MiB scattered over 16 (docs/performance.md).
//!
//! Only where the linker is known to be lld, which takes
//! `--symbol-ordering-file`: Rust ≥ 1.90 links `x86_64-unknown-linux-gnu`
//! with its own rust-lld unless told otherwise. With any other linker, or a
//! linker chosen by the user, the binary links as usual, without the layout.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const LIST: &str = "layout/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    if let Some(list) = ordering_file() {
        // `-Xlinker`, not `-Wl,`: the path goes through whole, even with a
        // comma in a directory name.
        println!("cargo:rustc-link-arg-bins=-Xlinker");
        println!(
            "cargo:rustc-link-arg-bins=--symbol-ordering-file={}",
            list.display()
        );
        // A list made with other dependency versions names functions this
        // build does not have; lld skips them, quietly.
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

fn ordering_file() -> Option<PathBuf> {
    if env::var("TARGET").ok()? != "x86_64-unknown-linux-gnu" {
        return None;
    }
    // A linker of the user's choice (target.<triple>.linker, -C linker=,
    // -C link-arg=-fuse-ld=..., -C linker-features, -C link-self-contained)
    // may not be lld.
    if env::var_os("RUSTC_LINKER").is_some() {
        return None;
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return None;
    }
    let rustc = env::var("RUSTC").ok()?;
    if !rustc_links_with_lld(&rustc)? {
        return None;
    }
    let list = Path::new(&env::var("CARGO_MANIFEST_DIR").ok()?).join(LIST);
    list.is_file().then_some(list)
}

/// Rust 1.90 made rust-lld the default linker of x86_64-unknown-linux-gnu;
/// it lives in the sysroot's `gcc-ld` directory (a distribution's rustc
/// built without it has none).
fn rustc_links_with_lld(rustc: &str) -> Option<bool> {
    let version = Command::new(rustc).arg("-vV").output().ok()?;
    let version = String::from_utf8(version.stdout).ok()?;
    let release = version.lines().find_map(|l| l.strip_prefix("release: "))?;
    let mut parts = release.split(['.', '-']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    if (major, minor) < (1, 90) {
        return Some(false);
    }
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(sysroot.stdout).ok()?;
    let lld =
        Path::new(sysroot.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld/ld.lld");
    Some(lld.is_file())
}
