#!/usr/bin/env bash
# Runs the cargo-fuzz targets for a bounded time each, from the corpus kept
# in fuzz/corpus/<target>, and prints the executions and whether each run
# ended clean. A crash leaves its input under fuzz/artifacts/<target>/.
#
#   fuzz/run.sh                   # every target, 600 s each
#   fuzz/run.sh 20                # every target, 20 s each (CI)
#   fuzz/run.sh 600 headers json  # some targets
#   FUZZ_MERGE=1 fuzz/run.sh 600  # also merge what the run found into the corpus
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). libFuzzer's flags
# need nightly features: RUSTC_BOOTSTRAP lets the stable toolchain accept
# them. Built without a sanitizer: the workspace forbids `unsafe`, and what
# is looked for here is a panic, a hang or unbounded memory, which libFuzzer
# reports by itself (and the runs execute several times faster).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(headers jwt json oauth request messages)
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || { echo "needs cargo-fuzz: cargo install cargo-fuzz --locked" >&2; exit 1; }
# One build for every target (the binaries share everything but main).
cargo fuzz build --sanitizer none -O 2>&1 | tail -3
failed=0
for target in "${targets[@]}"; do
    work=$(mktemp -d)
    cp -r "corpus/$target/." "$work/"
    log="target/fuzz-$target.log"
    mkdir -p target
    status=0
    # -timeout: one input taking 10 s is a hang; -rss_limit_mb: memory
    # that grows with the input is a failure too.
    cargo fuzz run --sanitizer none -O "$target" "$work" -- \
        -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$log" | tail -1)
    if [ "$status" -eq 0 ]; then
        echo "$target: ${runs:-?} executions in ${seconds}s, no crash"
    else
        echo "$target: FAILED after ${runs:-?} executions (exit $status); see fuzz/$log and fuzz/artifacts/$target/"
        grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 || true
        failed=1
    fi
    if [ "${FUZZ_MERGE:-}" = 1 ]; then
        cargo fuzz run --sanitizer none -O "$target" "corpus/$target" "$work" -- -merge=1 >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
done
exit "$failed"
