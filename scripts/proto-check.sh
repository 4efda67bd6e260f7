#!/usr/bin/env bash
# The contract check of `make lint`: `buf lint` on proto/ (rules and their recorded exceptions in
# buf.yaml), then `buf breaking` against proto/ on the main branch, so that no change to an API
# or to an event (stored and replayed forever) breaks the wire silently.
#
# The main branch is read with `git archive` (DW_PROTO_BASE=<any commit-ish> when set, else a
# local `main`, else `origin/main`), which works in worktrees and shallow clones alike. A clone
# without the main branch's commit (e.g. `git clone --depth 1 --branch feature`) skips the
# breaking check with a warning: fetch main (`git fetch origin main`) to run it.
#
# Usage: scripts/proto-check.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DW_LOG_TAG=proto

buf=$("$DW_ROOT/scripts/deps.sh" --buf)
cd "$DW_ROOT"

"$buf" lint || die "buf lint found the problems above in proto/ (fix them, or record an exception with its reason in buf.yaml)"
log "buf lint: proto/ follows the rules of buf.yaml"

base=""
candidates=(main origin/main)
[[ -n "${DW_PROTO_BASE:-}" ]] && candidates=("$DW_PROTO_BASE" "${candidates[@]}")
for candidate in "${candidates[@]}"; do
    if git rev-parse --verify --quiet "$candidate^{commit}" >/dev/null 2>&1; then
        base=$candidate
        break
    fi
done
if [[ -z "$base" ]]; then
    warn "no main branch in this clone (neither main nor origin/main): buf breaking skipped; 'git fetch origin main' to run it"
    exit 0
fi
if ! git cat-file -e "$base:proto" 2>/dev/null; then
    warn "$base has no proto/ directory: buf breaking skipped"
    exit 0
fi

against=$(mktemp -d)
trap 'rm -rf "$against"' EXIT
if ! git archive "$base" proto | tar -x -C "$against"; then
    warn "could not read proto/ of $base (a shallow clone without its objects?): buf breaking skipped"
    exit 0
fi
"$buf" breaking --against "$against/proto" ||
    die "buf breaking: the changes above break the contract of $base (a breaking change is a new field, message or event type instead)"
log "buf breaking: nothing in proto/ breaks the wire of $base ($(git rev-parse --short "$base^{commit}"))"
