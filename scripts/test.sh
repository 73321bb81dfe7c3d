#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Benchmarks are not tests: `cargo bench --bench heartbeat` runs them (clippy above checks them).
cargo test
