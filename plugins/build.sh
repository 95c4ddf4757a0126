#!/bin/sh
# Rebuild every example plugin and copy each .wasm next to its source
# (plugins/<name>/<name>.wasm), where configs and tests load them.
#   ./plugins/build.sh          (from anywhere)
set -eu
cd "$(dirname "$0")"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi

# .cargo/config.toml makes wasm32-unknown-unknown the default target here.
cargo build --release --target wasm32-unknown-unknown

for name in level redact sample enrich; do
    cp "target/wasm32-unknown-unknown/release/$name.wasm" "$name/$name.wasm"
    echo "built $name/$name.wasm ($(wc -c < "$name/$name.wasm") bytes)"
done
