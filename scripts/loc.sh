#!/usr/bin/env bash
# Lines of Rust outside tests, counted as code (non-blank, non-comment) and
# as lines: each file up to an inline `#[cfg(test)] mod … {`, and no file
# that is itself a test module (`tests.rs`). Default: the server's sources.
set -euo pipefail
dir=${1:-crates/mcp-server/src}
lines=0
code=0
while IFS= read -r -d '' file; do
    body=$(awk '
        pending && /^mod [a-z_]+ \{/ { exit }
        { if (pending) print held; pending = 0 }
        /^#\[cfg\(test\)\]/ { pending = 1; held = $0; next }
        { print }
        END { if (pending) print held }
    ' "$file")
    lines=$((lines + $(printf '%s\n' "$body" | wc -l)))
    code=$((code + $(printf '%s\n' "$body" | grep -cvE '^\s*(//|$)' || true)))
done < <(find "$dir" -name '*.rs' ! -name tests.rs -print0)
echo "$dir: $code lines of code ($lines lines) outside tests"
