#!/usr/bin/env bash
# Idempotent set-up of what the Digital Workspace needs on a developer or CI machine:
#   - the Rust toolchain pieces (cargo, rustfmt, clippy, a C compiler for crates that build C;
#     no protoc: the proto crate compiles .proto files with protox),
#   - PostgreSQL on 127.0.0.1:5432 with trust auth for loopback connections,
#   - nats-server with JetStream on 127.0.0.1:4222,
#   - with --buf only: buf (the protobuf linter and breaking-change checker), from the npm
#     package @bufbuild/buf at a pinned version into .dw/tools/buf; prints the binary's path.
# Servers already answering are reused as they are; missing ones are installed with apt
# (non-interactive) and started. Safe to run any number of times.
#
# Usage: scripts/deps.sh [--toolchain-only | --servers-only | --buf]
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DW_LOG_TAG=deps

want_toolchain=1 want_servers=1 want_buf=0
case "${1:-}" in
    --toolchain-only) want_servers=0 ;;
    --servers-only) want_toolchain=0 ;;
    --buf) want_toolchain=0 want_servers=0 want_buf=1 ;;
    "") ;;
    -h | --help)
        sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown option '$1' (try --help)" ;;
esac

is_loopback() { [[ "$1" == 127.* || "$1" == localhost || "$1" == ::1 ]]; }

# ---------------------------------------------------------------------------------------------
# Rust toolchain

ensure_toolchain() {
    if ! have cargo; then
        if have rustup; then
            log "cargo missing: installing the stable toolchain with rustup"
            rustup toolchain install stable --profile minimal -c rustfmt,clippy || die "rustup could not install a toolchain"
            rustup default stable >/dev/null
        else
            die "no Rust toolchain (cargo) found: install one with rustup (stable, with rustfmt and clippy), then re-run"
        fi
    fi

    local need have_ver
    need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$DW_ROOT/Cargo.toml" | head -n1)
    have_ver=$(rustc --version | awk '{print $2}')
    if [[ -n "$need" && "$(printf '%s\n%s\n' "$need" "$have_ver" | sort -V | head -n1)" != "$need" ]]; then
        if have rustup; then
            log "rustc $have_ver is older than the workspace's rust-version $need: rustup update stable"
            rustup update stable || die "rustc $have_ver is too old (need $need) and rustup update failed"
        else
            die "rustc $have_ver is too old: the workspace needs $need or newer"
        fi
    fi

    local component cmd
    for component in rustfmt clippy; do
        [[ "$component" == rustfmt ]] && cmd=fmt || cmd=clippy
        if ! cargo "$cmd" --version >/dev/null 2>&1; then
            have rustup || die "cargo $cmd is missing and there is no rustup to add the '$component' component"
            log "adding the rustup component $component"
            rustup component add "$component" || die "rustup component add $component failed"
        fi
    done

    if ! have cc; then
        log "no C compiler (some crates build C code): installing gcc"
        apt_install gcc libc6-dev
    fi
    log "toolchain: $(rustc --version), $(cargo fmt --version 2>/dev/null | head -n1), $(cargo clippy --version 2>/dev/null | head -n1); protoc not needed (protox)"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL

# pg_cluster: print "VERSION NAME" of the local Debian cluster for our port (empty if none).
pg_cluster() {
    have pg_lsclusters || return 0
    pg_lsclusters -h 2>/dev/null | awk -v p="$DW_PG_PORT" '$3 == p { print $1, $2; exit }'
}

start_postgres() {
    is_loopback "$DW_PG_HOST" ||
        die "PostgreSQL at $DW_PG_HOST:$DW_PG_PORT does not answer, and it is not local: start it, or set DW_PG_HOST"

    if ! have pg_ctlcluster || [[ ! -d /usr/lib/postgresql ]]; then
        log "PostgreSQL is not installed: installing it with apt"
        apt_install postgresql postgresql-client
        # The package may have started its cluster itself (systemd machines).
        if wait_until 10 "PostgreSQL started by its package" pg_answers; then
            log "PostgreSQL started by its package"
            return 0
        fi
    fi

    local cluster ver name
    cluster=$(pg_cluster)
    if [[ -z "$cluster" ]]; then
        # No cluster on our port yet: create one ("main", or "dw" when "main" is taken).
        ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
        [[ -n "$ver" ]] || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
        name=main
        [[ -d "/etc/postgresql/$ver/main" ]] && name=dw
        log "creating the PostgreSQL $ver cluster '$name' on port $DW_PG_PORT"
        as_root pg_createcluster "$ver" "$name" --port "$DW_PG_PORT" >/dev/null
        cluster="$ver $name"
    fi
    read -r ver name <<<"$cluster"
    log "starting PostgreSQL $ver/$name: pg_ctlcluster --skip-systemctl-redirect $ver $name start"
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start ||
        warn "pg_ctlcluster returned an error (see /var/log/postgresql/postgresql-$ver-$name.log)"
    wait_until 60 "PostgreSQL on $DW_PG_HOST:$DW_PG_PORT" pg_answers ||
        die "PostgreSQL did not answer on $DW_PG_HOST:$DW_PG_PORT within 60s (see /var/log/postgresql/postgresql-$ver-$name.log)"
}

# trust_loopback: let loopback TCP connections in without a password (development machines only).
trust_loopback() {
    local hba marker='# digital-workspace scripts/deps.sh: trust loopback connections (development only)'
    is_loopback "$DW_PG_HOST" && can_root && have pg_lsclusters || return 1
    hba=$(as_postgres psql -X -At -w -p "$DW_PG_PORT" -d postgres -c 'show hba_file' </dev/null 2>/dev/null) || return 1
    [[ -n "$hba" ]] || return 1
    if ! as_root grep -qF "$marker" "$hba"; then
        log "configuring trust auth for 127.0.0.1 and ::1 in $hba"
        as_root sed -i "1i $marker\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust" "$hba"
    fi
    as_postgres psql -X -At -w -p "$DW_PG_PORT" -d postgres -c 'select pg_reload_conf()' </dev/null >/dev/null
    sleep 1
}

ensure_postgres() {
    if pg_answers; then
        log "PostgreSQL answers on $DW_PG_HOST:$DW_PG_PORT: reusing it"
    else
        log "PostgreSQL does not answer on $DW_PG_HOST:$DW_PG_PORT"
        start_postgres
    fi
    have psql || apt_install postgresql-client

    local err
    if ! err=$(psql_admin -c 'select 1' 2>&1 >/dev/null); then
        warn "cannot log in as '$DW_PG_USER' without a password: $err"
        if ! trust_loopback; then
            die "cannot connect to $(dw_pg_url) without a password, and could not set up trust auth: allow trust auth for 127.0.0.1 in pg_hba.conf, or set DW_PG_USER"
        fi
        err=$(psql_admin -c 'select 1' 2>&1 >/dev/null) ||
            die "cannot connect to $(dw_pg_url) without a password ($err): allow trust auth for 127.0.0.1 in pg_hba.conf, or set DW_PG_USER"
    fi
    log "PostgreSQL ready: $(psql_admin -c 'show server_version') at $(dw_pg_url)"
}

# ---------------------------------------------------------------------------------------------
# NATS

nats_has_jetstream() { [[ "$(nats_info)" == *'"jetstream":true'* ]]; }
# shellcheck disable=SC2329 # called through wait_until
nats_gone() { ! nats_answers; }

start_nats() {
    is_loopback "$DW_NATS_HOST" ||
        die "NATS at $DW_NATS_HOST:$DW_NATS_PORT does not answer, and it is not local: start it, or set DW_NATS_HOST"

    local bin
    bin=$(command -v nats-server || true)
    if [[ -z "$bin" ]]; then
        log "nats-server is not installed: installing it with apt"
        apt_install nats-server
        bin=$(command -v nats-server || echo /usr/sbin/nats-server)
        [[ -x "$bin" ]] || die "nats-server is still missing after apt-get install"
        sleep 1
        if nats_answers; then
            if nats_has_jetstream; then
                log "nats-server started by its package"
                return 0
            fi
            # Debian's unit runs /etc/nats-server.conf, without JetStream: replace it by ours.
            if have systemctl; then
                log "the package's nats-server service runs without JetStream: disabling it (systemctl disable --now nats-server)"
                as_root systemctl disable --now nats-server >/dev/null 2>&1 || true
            fi
            wait_until 15 "the package's nats-server to stop" nats_gone ||
                die "a nats-server without JetStream holds $DW_NATS_HOST:$DW_NATS_PORT; stop it and re-run"
        fi
    fi

    local -a args=(-a "$DW_NATS_HOST" -p "$DW_NATS_PORT" -js)
    local logfile
    # The machine's documented way for the default port; start-stop-daemon --oknodo would do
    # nothing for another port while a nats-server already runs, so those run as this user.
    if [[ "$DW_NATS_PORT" == 4222 ]] && can_root && have start-stop-daemon; then
        logfile=/var/log/nats-server.log
        as_root mkdir -p /var/lib/nats-server
        log "starting nats-server: start-stop-daemon --start --oknodo --background --exec $bin -- ${args[*]} -sd /var/lib/nats-server -l $logfile"
        as_root start-stop-daemon --start --oknodo --background --exec "$bin" -- \
            "${args[@]}" -sd /var/lib/nats-server -l "$logfile"
    else
        # No root: run it as this user, with its store and log under the state directory.
        mkdir -p "$DW_STATE_DIR/nats/store"
        logfile="$DW_STATE_DIR/nats/nats-server.log"
        log "starting nats-server as $(id -un): store and log under $DW_STATE_DIR/nats"
        setsid nohup "$bin" "${args[@]}" -sd "$DW_STATE_DIR/nats/store" -l "$logfile" </dev/null >/dev/null 2>&1 &
    fi
    wait_until 30 "nats-server on $DW_NATS_HOST:$DW_NATS_PORT" nats_answers ||
        die "nats-server did not answer on $DW_NATS_HOST:$DW_NATS_PORT within 30s (see $logfile)"
}

ensure_nats() {
    if nats_answers; then
        log "NATS answers on $DW_NATS_HOST:$DW_NATS_PORT: reusing it"
    else
        log "NATS does not answer on $DW_NATS_HOST:$DW_NATS_PORT"
        start_nats
    fi
    nats_has_jetstream ||
        die "the NATS server on $DW_NATS_HOST:$DW_NATS_PORT runs without JetStream: restart it with -js (the services need JetStream)"
    local version
    version=$(nats_info | sed -n 's/.*"version":"\([^"]*\)".*/\1/p')
    log "NATS ready: nats-server ${version:-?} with JetStream at $(dw_nats_url)"
}

# ---------------------------------------------------------------------------------------------
# buf (make lint): pinned, installed per checkout, so every machine checks with the same rules

DW_BUF_VERSION=${DW_BUF_VERSION:-1.75.0}

ensure_buf() {
    local dir="$DW_ROOT/.dw/tools/buf" buf
    buf="$dir/node_modules/.bin/buf"
    if [[ -x "$buf" && "$("$buf" --version 2>/dev/null)" == "$DW_BUF_VERSION" ]]; then
        printf '%s\n' "$buf"
        return 0
    fi
    if ! have npm; then
        log "npm missing (buf is installed from the npm registry): installing nodejs and npm"
        apt_install nodejs npm
    fi
    log "installing buf $DW_BUF_VERSION (npm @bufbuild/buf) into ${dir#"$DW_ROOT"/}"
    mkdir -p "$dir"
    # The package's binary comes from its platform package (an optional dependency); its
    # postinstall script is not needed for the binary, so none runs.
    npm install --prefix "$dir" --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
        "@bufbuild/buf@$DW_BUF_VERSION" >&2 ||
        die "npm could not install @bufbuild/buf@$DW_BUF_VERSION (is the npm registry reachable?)"
    [[ "$("$buf" --version 2>/dev/null)" == "$DW_BUF_VERSION" ]] ||
        die "buf $DW_BUF_VERSION was installed but $buf does not run"
    printf '%s\n' "$buf"
}

# ---------------------------------------------------------------------------------------------

((want_buf)) && ensure_buf
((want_toolchain)) && ensure_toolchain
if ((want_servers)); then
    ensure_postgres
    ensure_nats
fi
exit 0
