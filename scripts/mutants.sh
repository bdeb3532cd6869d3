#!/bin/bash
# Mutation testing (issue 13): break the code on purpose, one mutant at a
# time, and check the tests notice. A missed mutant fails the run unless
# mutants/allowed.txt lists it with the reason it is acceptable. A timeout
# (the mutant made the tests hang: an infinite loop) counts as caught and is
# shown in the summary; rerun on an idle machine if there are many.
#
#   scripts/mutants.sh                 # every file .cargo/mutants.toml examines
#   scripts/mutants.sh policy          # one scope of that run (policy or shim)
#   MUTANTS_JOBS=3 scripts/mutants.sh shim   # mutants built and tested at once
#                                      # (the shim's tests mostly wait: 10 s of CPU in 45 s)
#   scripts/mutants.sh --no-config -p agentbox-policy -f policy-injector/src/mounts.rs   # a subset
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
    found=$(key "$dir/missed.txt" 2>/dev/null || true)
    local ok
    ok=$({ grep -v '^#' "$allowed" || true; } | sed -E 's/[[:space:]]+# .*$//' | { grep -v '^$' || true; } | sort -u)
    local new
    new=$(comm -23 <(echo "$found" | { grep -v "^$" || true; }) <(echo "$ok"))
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

# one package at a time: each builds only its own crate and dependencies
run() {
    local name=$1
    shift
    mkdir -p "$out/$name"
    local start
    start=$(date +%s)
    # cargo-mutants exits non-zero when a mutant is missed: the allowlist decides
    cargo mutants --no-shuffle --jobs "${MUTANTS_JOBS:-1}" --output "$out/$name" "$@" || true
    echo "$name: run time $(( $(date +%s) - start )) s" | tee "$out/$name/time.txt"
    local status=0
    check "$out/$name/mutants.out" || status=1
    # the result files to check in after a release run (issue 13)
    if [ "$name" != custom ]; then
        mkdir -p "mutants/last-run/$name"
        cp "$out/$name/mutants.out/"{summary,caught,missed,timeout,unviable}.txt "$out/$name/time.txt" \
            "mutants/last-run/$name/"
    fi
    return $status
}

case "${1:-}" in
    policy) run policy -p agentbox-policy; exit ;;
    shim) run shim -p agentbox-shim; exit ;;
esac

if [ $# -gt 0 ]; then
    run custom "$@"
else
    status=0
    run policy -p agentbox-policy || status=1
    run shim -p agentbox-shim || status=1
    exit $status
fi
