#!/usr/bin/env bash
# The project's test command: formatting, lints, then every test. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Benchmarks are not tests: `cargo bench --bench heartbeat` runs them (clippy above checks them).
# A test that skips for want of a service (sshd, tmux, git, script) records it here, since
# cargo test hides what passing tests print; the list is printed at the end, pass or fail.
POLARIS_SKIP_LOG="$(mktemp)"
export POLARIS_SKIP_LOG
report_skips() {
  if [ -s "$POLARIS_SKIP_LOG" ]; then
    printf '\n!!!!!!!! %s test(s) SKIPPED for want of a service:\n' "$(wc -l < "$POLARIS_SKIP_LOG")"
    sed 's/^/  /' "$POLARIS_SKIP_LOG"
  fi
  rm -f "$POLARIS_SKIP_LOG"
}
trap report_skips EXIT
cargo test
