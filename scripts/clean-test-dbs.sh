#!/usr/bin/env bash
# Remove what crashed or interrupted test runs left behind:
#   - Postgres databases named dwtest_* (each test creates its own),
#   - JetStream streams named TEST_* (only when the `nats` CLI is installed; it is not required).
# Safe next to a test run in progress: a database with open connections, or one younger than
# DW_CLEAN_MIN_AGE_MINUTES (default 30), is left alone; so is a stream younger than that.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DW_LOG_TAG=clean

min_age=${DW_CLEAN_MIN_AGE_MINUTES:-30}
[[ "$min_age" =~ ^[0-9]+$ ]] || die "DW_CLEAN_MIN_AGE_MINUTES must be a number of minutes"

# --- databases ------------------------------------------------------------------------------
have psql || die "psql not found: run scripts/deps.sh first"
pg_answers || die "PostgreSQL does not answer on $DW_PG_HOST:$DW_PG_PORT: run scripts/deps.sh first"

# The age of a database is that of its directory (pg_stat_file needs a superuser; when it is not
# allowed, fall back to "no open connections" alone).
age_sql="coalesce((pg_stat_file('base/' || d.oid::text, true)).modification, '-infinity') < now() - interval '$min_age minutes'"
list_sql="select d.datname from pg_database d
          where d.datname like 'dwtest\\_%'
            and not exists (select 1 from pg_stat_activity a where a.datname = d.datname)"
if ! dbs=$(psql_admin -c "$list_sql and $age_sql order by 1" 2>/dev/null); then
    dbs=$(psql_admin -c "$list_sql order by 1")
fi

dropped=0 failed=0
while IFS= read -r db; do
    [[ -n "$db" ]] || continue
    [[ "$db" =~ ^dwtest_[A-Za-z0-9_]*$ ]] || continue
    # No FORCE: a test that connected in the meantime keeps its database.
    if psql_admin -c "drop database if exists \"$db\"" >/dev/null 2>&1; then
        dropped=$((dropped + 1))
    else
        failed=$((failed + 1))
    fi
done <<<"$dbs"
left=$(psql_admin -c "select count(*) from pg_database where datname like 'dwtest\\_%'")
log "dropped $dropped leftover dwtest_* database(s)$( ((failed)) && echo ", $failed busy")$( ((left)) && echo "; $left in use or younger than ${min_age} min kept")"

# --- JetStream streams ----------------------------------------------------------------------
if ! have nats; then
    log "no 'nats' CLI installed: leftover TEST_* JetStream streams are not cleaned (harmless)"
    exit 0
fi
if ! have python3; then
    log "no python3 to read stream ages: TEST_* streams are not cleaned"
    exit 0
fi
server=$(dw_nats_url)
streams=$(nats --server "$server" stream ls --names 2>/dev/null | grep -E '^TEST_' || true)
removed=0
while IFS= read -r stream; do
    [[ -n "$stream" ]] || continue
    old=$(nats --server "$server" stream info "$stream" --json 2>/dev/null | python3 -c '
import json, sys, datetime
try:
    created = json.load(sys.stdin)["created"]
    t = datetime.datetime.fromisoformat(created[:26].rstrip("Z") + "+00:00")
    age = datetime.datetime.now(datetime.timezone.utc) - t
    print("yes" if age.total_seconds() > int(sys.argv[1]) * 60 else "no")
except Exception:
    print("no")' "$min_age") || old=no
    if [[ "$old" == yes ]] && nats --server "$server" stream rm --force "$stream" >/dev/null 2>&1; then
        removed=$((removed + 1))
    fi
done <<<"$streams"
log "removed $removed leftover TEST_* stream(s)"
