#!/usr/bin/env bash
# Runs gateway_openai.mjs (the official openai npm package against
# maritaca-gateway in front of maritaca-sim).
#
#   run_gateway_openai.sh MARITACA_SIM MARITACA_GATEWAY
#
# Installs the npm dependencies when node_modules is missing. Exits 77
# (CTest's skip code) only when node or npm is absent.
set -euo pipefail

sim_bin=$(realpath "$1")
gateway_bin=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are needed for the openai SDK test"
  exit 77
fi

cd "$here"
if [ ! -d node_modules/openai ]; then
  npm install --no-audit --no-fund
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Waits (up to 10 s) for the first line of file $1 and prints it.
first_line() {
  for _ in $(seq 100); do
    if [ -s "$1" ]; then
      head -n 1 "$1"
      return 0
    fi
    sleep 0.1
  done
  echo "no URL in $1" >&2
  return 1
}

"$sim_bin" --listen 127.0.0.1:0 --token-delay-ms 5 >"$work/sim.out" &
pids+=($!)
sim_url=$(first_line "$work/sim.out")

token=node-test-token
"$gateway_bin" --listen 127.0.0.1:0 --upstream "$sim_url" --token "$token" \
  --max-retries 0 --forward-header x-sim-fault >"$work/gateway.out" &
pids+=($!)
gateway_url=$(first_line "$work/gateway.out")

GATEWAY_URL=$gateway_url GATEWAY_TOKEN=$token node --test gateway_openai.mjs
