#!/usr/bin/env bash
# /health latency under slow and hostile clients, on loopback only.
#
#   cargo build --release -p mcp-server --bin mcp-server
#   benches/load/run.sh                       # starts target/release/mcp-server
#   benches/load/run.sh --server PATH --half-open 1000 --hostile 8 --requests 2000
#
# Extra arguments go to slow_clients.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/../.."
# 1,000 held connections on the client side, as many on the server side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec python3 benches/load/slow_clients.py "$@"
