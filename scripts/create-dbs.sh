#!/usr/bin/env bash
# Create the service databases listed in scripts/services.list when they are absent.
# Connects as DW_PG_USER (postgres) to DW_PG_HOST:DW_PG_PORT (127.0.0.1:5432). Idempotent.
# The services apply their own migrations at start-up (or with `<service> migrate`).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DW_LOG_TAG=dbs

have psql || die "psql not found: run scripts/deps.sh first"
pg_answers || die "PostgreSQL does not answer on $DW_PG_HOST:$DW_PG_PORT: run scripts/deps.sh first"
dw_load_services

for i in "${!DW_SVC_NAMES[@]}"; do
    db=${DW_SVC_DBS[$i]}
    [[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "unsafe database name '$db' in $DW_SERVICES_FILE"
    if [[ "$(psql_admin -c "select 1 from pg_database where datname = '$db'")" == 1 ]]; then
        log "database $db exists (${DW_SVC_NAMES[$i]})"
    else
        # A concurrent run may create it between the check and here: tolerate "already exists".
        if out=$(psql_admin -c "create database \"$db\"" 2>&1); then
            log "created database $db (${DW_SVC_NAMES[$i]})"
        elif [[ "$out" == *"already exists"* ]]; then
            log "database $db exists (${DW_SVC_NAMES[$i]})"
        else
            die "could not create database $db: $out"
        fi
    fi
done
