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
EMULATOR_PID=""
EMULATOR_LOG=""
report_skips() {
  if [ -s "$POLARIS_SKIP_LOG" ]; then
    printf '\n!!!!!!!! %s test(s) SKIPPED for want of a service:\n' "$(wc -l < "$POLARIS_SKIP_LOG")"
    sed 's/^/  /' "$POLARIS_SKIP_LOG"
  fi
  rm -f "$POLARIS_SKIP_LOG"
}
stop_emulator() {
  if [ -n "$EMULATOR_PID" ]; then
    kill "$EMULATOR_PID" 2>/dev/null || true
    wait "$EMULATOR_PID" 2>/dev/null || true
    EMULATOR_PID=""
  fi
}
on_exit() {
  stop_emulator
  if [ -n "$EMULATOR_LOG" ]; then rm -f "$EMULATOR_LOG"; fi
  report_skips
}
trap on_exit EXIT

# Without the emulator the Firestore tests skip (visibly); under POLARIS_REQUIRE_SERVICES=1, as
# CI runs, its absence fails the run here, naming what is missing.
no_emulator() {
  if [ "${POLARIS_REQUIRE_SERVICES:-}" = 1 ]; then
    printf '\n!!!!!!!! the Firestore emulator is required (POLARIS_REQUIRE_SERVICES=1), but %s\n' "$1" >&2
    exit 1
  fi
  printf '\n!!!!!!!! WARNING: no Firestore emulator (%s): the Firestore store tests will be SKIPPED\n\n' "$1" >&2
}

# One Firestore emulator for the whole run (each test uses a project of its own there), started
# as one Java process so that its PID is the one to stop; unless POLARIS_TEST_FIRESTORE already
# names a running one.
start_emulator() {
  command -v gcloud >/dev/null || { no_emulator "gcloud is not installed"; return 0; }
  command -v java >/dev/null || { no_emulator "java is not installed"; return 0; }
  local sdk jar port attempt
  sdk="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)" || sdk=""
  jar="$sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
  if [ -z "$sdk" ] || [ ! -f "$jar" ]; then
    no_emulator "$jar is missing (gcloud components install cloud-firestore-emulator)"
    return 0
  fi
  EMULATOR_LOG="$(mktemp)"
  for attempt in 1 2 3 4 5; do
    port=$((20000 + RANDOM % 20000))
    # Something listens there already: another port.
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then continue; fi
    # Without -Xmx its heap grows to several GB.
    java -Xmx512m -Duser.language=en -cp "$jar" \
      com.google.cloud.datastore.emulator.firestore.CloudFirestore start \
      --host=127.0.0.1 --port="$port" >"$EMULATOR_LOG" 2>&1 &
    EMULATOR_PID=$!
    for _ in $(seq 1 120); do
      if grep -q 'Dev App Server is now running' "$EMULATOR_LOG"; then
        export POLARIS_TEST_FIRESTORE="127.0.0.1:$port"
        echo "Firestore emulator on $POLARIS_TEST_FIRESTORE (pid $EMULATOR_PID)"
        return 0
      fi
      kill -0 "$EMULATOR_PID" 2>/dev/null || break
      sleep 0.5
    done
    stop_emulator
    # Another program took the port first: try another; any other failure is reported.
    grep -qi 'address already in use' "$EMULATOR_LOG" || break
  done
  printf '\n!!!!!!!! the Firestore emulator did not start (attempt %s); its log:\n' "$attempt" >&2
  cat "$EMULATOR_LOG" >&2
  no_emulator "it did not start within 60 s"
}
if [ -z "${POLARIS_TEST_FIRESTORE:-}" ]; then start_emulator; fi
cargo test
