#!/usr/bin/env bash
# Builds routerd and starts it on conf.d/dev.ini: type a line, get a reply
# from the mock backend ("@42 hi" talks as chat 42). Ctrl-D or Ctrl-C stops.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DROUTERD_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
echo "routerd: built; type a message and press Enter (Ctrl-D to stop)" >&2
exec ./build/routerd -c "${ROUTERD_CONFIG:-conf.d/dev.ini}" "$@"
