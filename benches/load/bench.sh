#!/usr/bin/env bash
# The server against a bare axum app and a bare rmcp server, in one run:
# builds the release binaries, then runs bench.py (see its --help).
#
#   benches/load/bench.sh                      # everything, 10 s per scenario
#   benches/load/bench.sh --duration 5 --only health,preflight
#
# Needs wrk (apt-get install wrk), PostgreSQL on 127.0.0.1:5432 (user
# postgres, trust) and Redis on 127.0.0.1:6379.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p mcp-server --bin mcp-server -p mcp-benches --bins
# 10,000 held connections on the client side, as many on the server side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true
exec python3 benches/load/bench.py "$@"
