# shellcheck shell=bash disable=SC2016 # bash -c '...' scripts expand their own "$1"
# Shared helpers for the scripts in scripts/. Source it, do not run it.
#
# Settings (environment, all optional):
#   DW_PG_HOST / DW_PG_PORT / DW_PG_USER   Postgres used by the scripts   (127.0.0.1 / 5432 / postgres)
#   DW_NATS_HOST / DW_NATS_PORT            NATS used by the scripts       (127.0.0.1 / 4222)
#   DW_STATE_DIR                           scratch space (logs, venv)     (<repo>/.dw, git-ignored)
#   NO_COLOR                               set to disable colours

DW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DW_STATE_DIR="${DW_STATE_DIR:-$DW_ROOT/.dw}"
DW_SERVICES_FILE="${DW_SERVICES_FILE:-$DW_ROOT/scripts/services.list}"

DW_PG_HOST="${DW_PG_HOST:-127.0.0.1}"
DW_PG_PORT="${DW_PG_PORT:-5432}"
DW_PG_USER="${DW_PG_USER:-postgres}"
DW_NATS_HOST="${DW_NATS_HOST:-127.0.0.1}"
DW_NATS_PORT="${DW_NATS_PORT:-4222}"

# The documented development secret of the local cluster (README, deploy/overlays/dev).
# Never use it outside a developer machine.
# shellcheck disable=SC2034 # used by the scripts that source this file
DW_DEV_JWT_SECRET="dw-local-development-secret-change-me"

# Rust tools installed by rustup live here; make them visible to non-login shells.
if [[ -d "$HOME/.cargo/bin" && ":$PATH:" != *":$HOME/.cargo/bin:"* ]]; then
    PATH="$HOME/.cargo/bin:$PATH"
fi
# Debian keeps pg_ctlcluster, start-stop-daemon and nats-server in sbin, which a non-root PATH may lack.
for _dw_dir in /usr/sbin /sbin; do
    [[ -d "$_dw_dir" && ":$PATH:" != *":$_dw_dir:"* ]] && PATH="$PATH:$_dw_dir"
done
unset _dw_dir
export PATH

# ---------------------------------------------------------------------------------------------
# logging

if [[ -t 2 && -z "${NO_COLOR:-}" ]]; then
    _DW_C_TAG=$'\e[1;36m' _DW_C_WARN=$'\e[1;33m' _DW_C_ERR=$'\e[1;31m' _DW_C_OFF=$'\e[0m'
else
    _DW_C_TAG='' _DW_C_WARN='' _DW_C_ERR='' _DW_C_OFF=''
fi

log() { printf '%s%s[%s]%s %s\n' "$(date +%H:%M:%S) " "$_DW_C_TAG" "${DW_LOG_TAG:-dw}" "$_DW_C_OFF" "$*" >&2; }
warn() { printf '%s%s[%s] warning:%s %s\n' "$(date +%H:%M:%S) " "$_DW_C_WARN" "${DW_LOG_TAG:-dw}" "$_DW_C_OFF" "$*" >&2; }
die() {
    printf '%s%s[%s] error:%s %s\n' "$(date +%H:%M:%S) " "$_DW_C_ERR" "${DW_LOG_TAG:-dw}" "$_DW_C_OFF" "$*" >&2
    exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------
# privileges

is_root() { [[ "$(id -u)" == 0 ]]; }

# can_root: true when as_root will work without a prompt (root, or password-less sudo).
can_root() { is_root || { have sudo && sudo -n true 2>/dev/null; }; }

# as_root CMD...: run CMD as root (directly, or through non-interactive sudo).
as_root() {
    if is_root; then
        "$@"
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n -- "$@"
    else
        die "need root to run '$*' (not root, and no password-less sudo): run it yourself, then re-run"
    fi
}

# as_postgres CMD...: run CMD as the postgres system user (for the Debian cluster tools).
as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    elif is_root && have runuser; then
        runuser -u postgres -- "$@"
    elif is_root; then
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    elif have sudo && sudo -n true 2>/dev/null; then
        sudo -n -u postgres -- "$@"
    else
        die "need root or password-less sudo to run '$*' as the postgres user"
    fi
}

# ---------------------------------------------------------------------------------------------
# apt

_DW_APT_UPDATED=0
# apt_install PKG...: install Debian packages without any prompt; `apt-get update` once per run.
apt_install() {
    have apt-get || die "cannot install $* : no apt-get on this machine (install them by hand)"
    if [[ "$_DW_APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null ||
            die "apt-get update failed"
        _DW_APT_UPDATED=1
    fi
    log "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@" </dev/null ||
        die "apt-get install $* failed"
}

# ---------------------------------------------------------------------------------------------
# network

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null; }

# http_status HOST PORT PATH: print the HTTP status code of a GET (000 when nothing answers).
http_status() {
    local host=$1 port=$2 path=$3 code
    if have curl; then
        code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$host:$port$path" 2>/dev/null) || true
    else
        code=$(timeout 3 bash -c '
            exec 3<>"/dev/tcp/$1/$2" || exit 1
            printf "GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$3" "$1" "$2" >&3
            IFS=" " read -r _ status _ <&3 && printf "%s" "$status"' _ "$host" "$port" "$path" 2>/dev/null) || true
    fi
    printf '%s' "${code:-000}"
}

# wait_until TIMEOUT_SECONDS DESCRIPTION CMD...: poll CMD every 0.5 s until it succeeds.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout)) announced=0
    until "$@"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        if ((announced == 0)); then
            log "waiting for $what (up to ${timeout}s)"
            announced=1
        fi
        sleep 0.5
    done
}

# ---------------------------------------------------------------------------------------------
# Postgres

dw_pg_url() { printf 'postgres://%s@%s:%s/%s' "$DW_PG_USER" "$DW_PG_HOST" "$DW_PG_PORT" "${1:-postgres}"; }

# psql_admin ARGS...: psql against the maintenance database, never prompting for a password.
psql_admin() {
    psql -X -q -At -w -v ON_ERROR_STOP=1 -h "$DW_PG_HOST" -p "$DW_PG_PORT" -U "$DW_PG_USER" -d postgres "$@" </dev/null
}

pg_answers() {
    if have pg_isready; then
        pg_isready -q -h "$DW_PG_HOST" -p "$DW_PG_PORT" -t 2 >/dev/null 2>&1
    else
        tcp_open "$DW_PG_HOST" "$DW_PG_PORT"
    fi
}

# ---------------------------------------------------------------------------------------------
# NATS

dw_nats_url() { printf 'nats://%s:%s' "$DW_NATS_HOST" "$DW_NATS_PORT"; }

nats_answers() { tcp_open "$DW_NATS_HOST" "$DW_NATS_PORT"; }

# nats_info: print the server's INFO line (JSON), empty when it does not answer.
nats_info() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1; IFS= read -r line <&3; printf "%s" "$line"' \
        _ "$DW_NATS_HOST" "$DW_NATS_PORT" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# services (scripts/services.list)

DW_SVC_NAMES=() DW_SVC_DBS=() DW_SVC_GRPC=() DW_SVC_METRICS=()

dw_load_services() {
    DW_SVC_NAMES=() DW_SVC_DBS=() DW_SVC_GRPC=() DW_SVC_METRICS=()
    local name db grpc metrics _rest
    while read -r name db grpc metrics _rest; do
        [[ -z "$name" || "$name" == \#* ]] && continue
        [[ -n "$db" && "$grpc" =~ ^[0-9]+$ && "$metrics" =~ ^[0-9]+$ ]] ||
            die "bad line in $DW_SERVICES_FILE: '$name $db $grpc $metrics'"
        DW_SVC_NAMES+=("$name") DW_SVC_DBS+=("$db") DW_SVC_GRPC+=("$grpc") DW_SVC_METRICS+=("$metrics")
    done <"$DW_SERVICES_FILE"
}

# svc_exists NAME: the service is part of the workspace (it has a crate under services/).
svc_exists() { [[ -f "$DW_ROOT/services/$1/Cargo.toml" ]]; }

# svc_env_name NAME: agent-sessions -> AGENT_SESSIONS
svc_env_name() { local n=${1^^}; printf '%s' "${n//-/_}"; }

# cargo_target_dir: where cargo puts binaries (honours CARGO_TARGET_DIR and .cargo/config).
cargo_target_dir() {
    local dir
    dir=$(cd "$DW_ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    printf '%s' "${dir:-${CARGO_TARGET_DIR:-$DW_ROOT/target}}"
}
