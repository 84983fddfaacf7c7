#!/usr/bin/env bash
# The main job, offline: `p2pd demo --sim` plays the demo inside the network simulator —
# two computers behind NATs (yours port_restricted_cone/random, the peer's
# symmetric/independent unless chosen), each strategy skipped or tried with its virtual
# time, the winner, then an echo chat over the connection. Needs no network at all.
#
# Usage: bash scripts/demo.sh [demo flags…]
#   e.g. bash scripts/demo.sh --nat full_cone/equal --peer-nat blocked
# Run `target/release/p2pd demo --sim` in a terminal for the interactive version (it asks
# for the NATs, the strategies and the chat lines), or `p2pd demo` on a real network.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p p2pd
bin=target/release/p2pd

echo "\$ p2pd demo --sim --script 'hello from behind two NATs\nbye' $*"
"$bin" demo --sim --script 'hello from behind two NATs\nbye' "$@"
