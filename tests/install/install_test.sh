#!/usr/bin/env bash
# Installs the built tree into a temporary prefix, builds an outside
# project against it with find_package(maritaca), and runs it against
# maritaca-sim.
set -euo pipefail
build_dir=$1
source_dir=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
sim_pid=
cleanup() {
  if [[ -n $sim_pid ]]; then kill "$sim_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$work/prefix" >/dev/null
test -f "$work/prefix/include/maritaca/chat_model.hpp"
test -f "$work/prefix/include/maritaca/sim/server.hpp"
test -f "$work/prefix/include/maritaca/gateway/service.hpp"
# Beast-side code stays out of the installed headers.
test ! -e "$work/prefix/include/maritaca/transport/bounded_parser.hpp"
test -f "$work/prefix/lib/cmake/maritaca/maritacaConfig.cmake"

cmake -S "$source_dir/consumer" -B "$work/build" \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/build" -j2 >/dev/null

# The installed maritaca-sim serves the consumer.
"$work/prefix/bin/maritaca-sim" --listen 127.0.0.1:0 >"$work/sim.out" &
sim_pid=$!
for _ in $(seq 100); do
  [[ -s $work/sim.out ]] && break
  sleep 0.05
done
url=$(head -n1 "$work/sim.out")
out=$("$work/build/consumer" "$url")
echo "consumer answered: $out"
[[ $out == *4* ]]
[[ $out == *Bras* ]]
[[ $out == *gateway:*answer* ]]
