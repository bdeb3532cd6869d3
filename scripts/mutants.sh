#!/bin/bash
# Mutation testing (issue 13): break the code on purpose, one mutant at a
# time, and check the tests notice. A missed or timed-out mutant fails the
# run unless mutants/allowed.txt lists it with the reason it is acceptable.
#
#   scripts/mutants.sh                 # every file .cargo/mutants.toml examines
#   scripts/mutants.sh -f 'policy-injector/src/mounts.rs'   # a subset
#   scripts/mutants.sh --check DIR     # only compare an existing mutants.out
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
allowed=mutants/allowed.txt
out=.work/mutants

# the mutant's identity without its line and column, which move with edits
key() { sed -E 's/^([^:]+):[0-9]+:[0-9]+: /\1: /' "$@" | sort -u; }

check() {
    local dir=$1
    local found
    found=$(cat "$dir/missed.txt" "$dir/timeout.txt" 2>/dev/null | key)
    local ok
    ok=$(grep -v '^#' "$allowed" | sed -E 's/[[:space:]]+# .*$//' | grep -v '^$' | sort -u)
    local new
    new=$(comm -23 <(echo "$found" | grep -v '^$') <(echo "$ok"))
    {
        echo "caught:   $(wc -l < "$dir/caught.txt")"
        echo "missed:   $(wc -l < "$dir/missed.txt")"
        echo "timeout:  $(wc -l < "$dir/timeout.txt")"
        echo "unviable: $(wc -l < "$dir/unviable.txt")"
    } | tee "$dir/summary.txt"
    if [ -n "$new" ]; then
        echo "mutants the tests did not catch and $allowed does not explain:" >&2
        echo "$new" >&2
        return 1
    fi
    echo "every missed mutant is listed in $allowed with its reason"
}

if [ "${1:-}" = "--check" ]; then
    check "$2"
    exit
fi

command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
mkdir -p "$out"
start=$(date +%s)
# cargo-mutants exits non-zero when a mutant is missed: the allowlist decides
cargo mutants --no-shuffle --output "$out" "$@" || true
echo "run time: $(( $(date +%s) - start )) s"
check "$out/mutants.out"
