#!/usr/bin/env bash
# The main job, on loopback: start an RFC 5780 STUN server on 127.0.0.1 and 127.0.0.2, ask
# it for this host's mapped address, then ask it to answer from its other IP and port.
#
# Usage: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -q -p p2pd
bin=target/release/p2pd
state=$(mktemp -d)
"$bin" stun-server --primary 127.0.0.1:0 --alternate 127.0.0.2 --json >"$state/server" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$state"' EXIT

for _ in $(seq 100); do [ -s "$state/server" ] && break; sleep 0.05; done
[ -s "$state/server" ] || { echo "the STUN server did not start" >&2; exit 1; }
echo "server: $(cat "$state/server")"
primary=$(sed -E 's/.*"listening":\["([^"]+)".*/\1/' "$state/server")

echo; echo "\$ p2pd stun $primary"
"$bin" stun "$primary"
echo; echo "\$ p2pd stun $primary --change-ip --change-port --json"
"$bin" stun "$primary" --change-ip --change-port --json
