#!/usr/bin/env bash
# Captures each dashboard tab of the real release binary as text into assets/screens/, for the
# README. A throw-away POLARIS_HOME under target/, a coordinator on a free loopback port, a
# registered miner, the agent running a small compute_subnet, and the dashboard in a private
# tmux server at 120×40. Nothing here is drawn by hand: it is what the dashboard shows.
#
#   cargo build --release && ./scripts/screens.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$PWD/target/release/polaris"
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
command -v tmux >/dev/null || { echo "tmux is needed: apt-get install -y tmux" >&2; exit 1; }

work="$PWD/target/screens"
rm -rf "$work" && mkdir -p "$work"
export POLARIS_HOME="$work/miner" POLARIS_LOCATION="Lisbon, PT" POLARIS_NVML_LIBRARY=/nonexistent/libnvidia-ml.so.1
export POLARIS_HEARTBEAT_INTERVAL=2s NO_COLOR=1
export POLARIS_COMPUTE_CMD='i=0; while true; do i=$((i+1)); echo "epoch $i: loss 0.$((90 - i % 80)), 812 samples/s"; [ $((i % 7)) -eq 0 ] && echo "warning: GPU memory 91% used" >&2; sleep 1; done'
export POLARIS_COMPUTE_REPO=https://github.com/BANADDA/cloudserver.git
sock="$work/tmux.sock"

cleanup() {
  tmux -S "$sock" kill-server 2>/dev/null || true
  "$bin" stop >/dev/null 2>&1 || true
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
}
trap cleanup EXIT

POLARIS_HOME="$work/coordinator" "$bin" server --listen 127.0.0.1:0 >"$work/server.out" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/server.out" 2>/dev/null && break; sleep 0.1; done
api=$(sed -n 's/.*(API: \(http[^)]*\)).*/\1/p' "$work/server.out" | head -n 1)
[ -n "$api" ] || { echo "the coordinator did not start: $(cat "$work/server.out")" >&2; exit 1; }
export SERVER_URL="$api"

"$bin" register --network standard --username alice --yes >/dev/null
"$bin" start >/dev/null
sleep 8   # a few heartbeats and log lines

tmux -S "$sock" -f /dev/null new-session -d -x 120 -y 40 "exec $bin"
capture() { sleep "$2"; tmux -S "$sock" capture-pane -p -t 0 | sed 's/[[:space:]]*$//' >"assets/screens/$1.txt"; }
capture overview 12     # the coordinator's view of the miner comes with its next poll
tmux -S "$sock" send-keys -t 0 2; capture register 1
tmux -S "$sock" send-keys -t 0 3; capture compute 2
tmux -S "$sock" send-keys -t 0 4; capture processes 3
tmux -S "$sock" send-keys -t 0 5; capture logs 2
tmux -S "$sock" send-keys -t 0 '?'; capture help 1
tmux -S "$sock" send-keys -t 0 q; sleep 1   # closes help
# The wizard's review step, on a second registration (nothing is sent: Esc backs out).
tmux -S "$sock" send-keys -t 0 2 Enter; sleep 3
tmux -S "$sock" send-keys -t 0 Down Enter; sleep 1   # replace the registration? Yes
capture register-system-information 1
tmux -S "$sock" send-keys -t 0 q
echo "wrote $(ls assets/screens | wc -l) captures to assets/screens/"
