#!/usr/bin/env bash
# Lines of Rust outside tests: each file up to its first `#[cfg(test)]`,
# counted as code (non-blank, non-comment) and as lines. Default: the
# server's sources.
set -euo pipefail
dir=${1:-crates/mcp-server/src}
lines=0
code=0
while IFS= read -r -d '' file; do
    body=$(awk '/^#\[cfg\(test\)\]/ { exit } { print }' "$file")
    lines=$((lines + $(printf '%s\n' "$body" | wc -l)))
    code=$((code + $(printf '%s\n' "$body" | grep -cvE '^\s*(//|$)' || true)))
done < <(find "$dir" -name '*.rs' -print0)
echo "$dir: $code lines of code ($lines lines) outside tests"
