#!/usr/bin/env bash
# Instructions per request, counted by callgrind: a figure the machine's
# noise does not move, for comparing two builds or a build and its ceiling.
#
#   benches/load/instructions.sh                         # target/release/mcp-server
#   benches/load/instructions.sh --server /tmp/old-mcp-server --only me_jwt,health
#   benches/load/instructions.sh --ceilings              # bare_axum and bare_rmcp too
#   benches/load/instructions.sh --keep /tmp/cg          # keep each dump for callgrind_annotate
#
# Each server runs under `valgrind --tool=callgrind` with instrumentation
# off until its scenario is warm (two seconds of wrk, one connection); then
# the counters are zeroed, wrk runs `--seconds` more, and the dump's total
# is divided by the requests wrk counted. Background tasks of the server
# (the audit writer, the metrics upkeep) are counted too: they are part of
# what a request costs. Needs valgrind, wrk and what bench.py needs.
set -euo pipefail
cd "$(dirname "$0")/../.."

server=target/release/mcp-server
only=health,me_jwt,me_key,preflight,mcp_call
seconds=3
ceilings=
keep=
while [ $# -gt 0 ]; do
    case "$1" in
        --server) server=$(realpath "$2"); shift 2 ;;
        --only) only=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --ceilings) ceilings=1; shift ;;
        --keep) mkdir -p "$2"; keep=$(realpath "$2"); shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in valgrind callgrind_control callgrind_annotate wrk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind wrk)" >&2; exit 1; }
done

work=$(mktemp -d)
cleanup() {
    exec 3>&-   # lets bench.py stop its server, or the wait below never ends
    [ -n "${holder:-}" ] && kill "$holder" 2>/dev/null || true
    pkill -f "callgrind-out-file=$work/" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# bench.py starts the server itself; the wrapper is the "binary" it starts.
cat > "$work/wrap.sh" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p "\$(cat $work/binary)" "\$@"
EOF
chmod +x "$work/wrap.sh"

# count ADDRESS PID SCENARIO: instructions per request of one scenario.
count() {
    local address=$1 pid=$2 scenario=$3 requests total file
    callgrind_control -i on "$pid" >/dev/null 2>&1
    wrk -t1 -c1 -d2s -s "/tmp/bench-$scenario.lua" "http://$address/" >/dev/null
    callgrind_control -z "$pid" >/dev/null 2>&1
    requests=$(wrk -t1 -c1 -d"${seconds}s" -s "/tmp/bench-$scenario.lua" "http://$address/" \
        | awk '/requests in/ {print $1}')
    callgrind_control -d "$scenario" "$pid" >/dev/null 2>&1
    callgrind_control -i off "$pid" >/dev/null 2>&1
    file=$(ls -t "$work"/cg."$pid".* | head -1)
    [ -n "$keep" ] && cp "$file" "$keep/$4-$scenario.callgrind"
    total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    printf "%-13s %-10s %9d instructions per request (%d requests)\n" \
        "$scenario" "$4" $((total / requests)) "$requests"
}

echo "$server" > "$work/binary"
mkfifo "$work/hold"
python3 benches/load/bench.py --serve pg --server "$work/wrap.sh" --only "$only" \
    < "$work/hold" > "$work/serve.json" &
exec 3> "$work/hold"   # bench.py keeps the server up until this closes
for _ in $(seq 120); do [ -s "$work/serve.json" ] && break; sleep 1; done
address=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["address"])' "$work/serve.json")
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$work/serve.json")
for scenario in ${only//,/ }; do
    count "$address" "$pid" "$scenario" pg
done
exec 3>&-
wait

if [ -n "$ceilings" ]; then
    for bare in bare_axum bare_rmcp; do
        echo "target/release/$bare" > "$work/binary"
        "$work/wrap.sh" 127.0.0.1:0 > "$work/$bare.log" 2>&1 &
        holder=$!
        for _ in $(seq 60); do grep -q "listening on" "$work/$bare.log" && break; sleep 1; done
        address=$(grep -o "listening on [0-9.:]*" "$work/$bare.log" | awk '{print $3}')
        for scenario in ${only//,/ }; do
            case "$bare:$scenario" in
                bare_axum:mcp_*|bare_rmcp:health|bare_rmcp:me_*|bare_rmcp:preflight|bare_rmcp:agents_post) continue ;;
            esac
            count "$address" "$holder" "$scenario" "${bare#bare_}"
        done
        kill "$holder"; wait "$holder" 2>/dev/null || true; holder=
    done
fi
