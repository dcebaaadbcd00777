#!/usr/bin/env bash
# Mutation testing of the security crates: every mutant that no test notices
# is a rule no test guards. Usage:
#   scripts/mutants.sh                 # every security crate, one after another
#   scripts/mutants.sh mcp-cors        # one crate
#   ITERATE=1 scripts/mutants.sh ...   # skip mutants caught in the last run
# Results: target/mutants/<crate>/mutants.out/{missed,caught,timeout,unviable}.txt
# Service-backed tests (PostgreSQL, Redis) must run, or store code looks
# untested: MCP_TEST_SERVICES=all compiles them in (see docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
export MCP_TEST_SERVICES="${MCP_TEST_SERVICES:-all}"
crates=("$@")
if [ ${#crates[@]} -eq 0 ]; then
    crates=(mcp-core mcp-cors mcp-validate mcp-auth mcp-apikeys mcp-ratelimit)
fi
status=0
for crate in "${crates[@]}"; do
    out="target/mutants/$crate"
    mkdir -p "$out"
    # Every feature: code behind a feature that is off would look untested.
    args=(-p "$crate" --all-features --jobs "${JOBS:-1}" -o "$out" --no-times)
    if [ -n "${ITERATE:-}" ]; then args+=(--iterate); fi
    echo "== cargo mutants ${args[*]}"
    cargo mutants "${args[@]}" || status=$?
    missed="$out/mutants.out/missed.txt"
    echo "== $crate: $(wc -l <"$missed" 2>/dev/null || echo '?') missed, $(wc -l <"$out/mutants.out/caught.txt" 2>/dev/null || echo '?') caught"
done
exit $status
