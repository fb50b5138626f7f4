#!/usr/bin/env bash
# Runs maritaca-bench with tiny counts against maritaca-sim and checks the
# output format (`name: value` lines). No figure is judged.
#   smoke_test.sh MARITACA_BENCH MARITACA_SIM
set -euo pipefail
bench=$1
sim=$2
tmp=$(mktemp -d)
sim_pid=
cleanup() {
  if [[ -n $sim_pid ]]; then kill "$sim_pid" 2>/dev/null || true; wait "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$sim" --listen 127.0.0.1:0 --threads 1 >"$tmp/sim.out" 2>"$tmp/sim.err" &
sim_pid=$!
for _ in $(seq 100); do
  [[ -s $tmp/sim.out ]] && break
  sleep 0.05
done
url=$(head -n1 "$tmp/sim.out")
[[ $url == http://* ]] || { echo "maritaca-sim did not start" >&2; cat "$tmp/sim.err" >&2; exit 1; }

fail=0
# expect OUTPUT NAME...: every NAME appears as `NAME: <number>`.
expect() {
  local out=$1; shift
  for name in "$@"; do
    if ! grep -Eq "^${name}: [0-9]+(\.[0-9]+)?$" <<<"$out"; then
      echo "missing or malformed '${name}: <number>' in:" >&2
      echo "$out" >&2
      fail=1
    fi
  done
}

out=$(timeout 20 "$bench" invoke --base-url "$url" --requests 20 --concurrency 4 --warmup 4)
expect "$out" 'req/s' p50_us p99_us cpu_ms errors
# The spin flags of bench/run's comparison row.
out=$(timeout 20 "$bench" invoke --base-url "$url" --requests 20 --concurrency 1 --warmup 2 \
  --io-spin-us 0 --scheduler-spin-us 0)
expect "$out" 'req/s' p50_us p99_us errors
out=$(timeout 20 "$bench" stream --base-url "$url" --requests 6 --concurrency 2 --chunks 10 --warmup 2)
expect "$out" 'streams/s' 'chunks/s' chunks_per_stream cpu_ms
grep -q '^chunks_per_stream: 12\.0$' <<<"$out" || { echo "expected 12 chunks per stream (10 words, finish, usage; no empty role chunk): $out" >&2; fail=1; }
out=$(timeout 20 "$bench" sessions --count 1000)
expect "$out" bytes_per_session
out=$(timeout 20 "$bench" admit --requests 20 --concurrency 4)
expect "$out" 'asks/s' failed
out=$(timeout 20 "$bench" admission --requests 20 --warmup 2)
expect "$out" remote_p50_us remote_p99_us local_p50_us local_p99_us
exit $fail
