#!/usr/bin/env bash
# Property-based check of the coordinator's OpenAPI document against the real server: schemathesis
# generates requests from GET /api/v1/openapi.json and checks every answer (issue 11, finding 4).
#   checks: not_a_server_error, response_schema_conformance, status_code_conformance,
#           positive_data_acceptance
# Two runs, one with a miner's token and one with the admin token. Loopback only.
#   SCHEMATHESIS_EXAMPLES  cases per operation and phase (default 100: > 1000 cases per token)
#   SCHEMATHESIS           the schemathesis command (default: `schemathesis` on PATH; install it
#                          with `pip install schemathesis`, tested with 4.32.5)
#   POLARIS_BIN            the polaris binary (default: `cargo build` and target/debug/polaris)
# Exits non-zero when a run reports a failure or an error.
set -euo pipefail
cd "$(dirname "$0")/.."
examples="${SCHEMATHESIS_EXAMPLES:-100}"
st="${SCHEMATHESIS:-schemathesis}"
command -v "$st" >/dev/null || { echo "schemathesis not found: pip install schemathesis" >&2; exit 2; }
if [ -z "${POLARIS_BIN:-}" ]; then
  cargo build --quiet
  POLARIS_BIN=target/debug/polaris
fi

home="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$home"
}
trap cleanup EXIT

# A free loopback port: the server picks one and prints it.
POLARIS_HOME="$home" HOME="$home" "$POLARIS_BIN" server --listen 127.0.0.1:0 >"$home/server.out" 2>&1 &
pid=$!
base=""
for _ in $(seq 100); do
  base="$(sed -n 's/^polaris server listening on \(http:[^ ]*\).*/\1/p' "$home/server.out")"
  [ -n "$base" ] && break
  sleep 0.1
done
[ -n "$base" ] || { echo "the server did not start:" >&2; cat "$home/server.out" >&2; exit 1; }
case "$base" in http://127.0.0.1:*) ;; *) echo "not loopback: $base" >&2; exit 1 ;; esac
api="$base/api/v1"
admin_token="$(cat "$home/admin_token")"

registered="$(curl -sf -H 'Content-Type: application/json' \
  --data @tests/fixtures/original/registration.json "$api/miners/")"
miner_id="$(printf '%s' "$registered" | python3 -c 'import json,sys; print(json.load(sys.stdin)["miner_id"])')"
miner_token="$(printf '%s' "$registered" | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')"

# The path's {id} is the registered miner, so its own routes get past 403/404 to the body.
config="$home/schemathesis.toml"
printf '[parameters]\n"path.id" = "%s"\n' "$miner_id" >"$config"

status=0
for who in miner admin; do
  if [ "$who" = miner ]; then token="$miner_token"; else token="$admin_token"; fi
  echo "=== schemathesis, the $who token, $examples cases per operation and phase"
  start=$(date +%s)
  # Run in the temp home: schemathesis leaves a .schemathesis/ folder where it runs.
  (cd "$home" && SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$OLDPWD/scripts${PYTHONPATH:+:$PYTHONPATH}" \
    "$st" --config-file "$config" run "$api/openapi.json" --url "$base" \
    --checks not_a_server_error,response_schema_conformance,status_code_conformance,positive_data_acceptance \
    --max-examples "$examples" --header "Authorization: Bearer $token" \
    --generation-database none --no-color --workers 1 \
    --suppress-health-check all) \
    || status=1
  echo "=== the $who token: $(( $(date +%s) - start )) s"
done
if ! kill -0 "$pid" 2>/dev/null; then echo "the server died" >&2; status=1; fi
exit "$status"
