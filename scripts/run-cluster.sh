#!/usr/bin/env bash
# Build the workspace and run the local Digital Workspace cluster in the foreground.
# `make run` calls it after scripts/deps.sh and scripts/create-dbs.sh.
#
# For every service of scripts/services.list that exists in the workspace (services/<name>/):
# apply its migrations (`<service> migrate`), start it in the background with its environment,
# prefix its log lines with its name, and wait for /readyz on its metrics port. Then seed the demo
# tenant (`dwctl demo seed --tenant demo`, then its provider accounts with `dwctl providers set`),
# print how to call the API, and stay in the foreground.
# When messaging-templates is among them, the local fake providers (`fake-providers`: a WhatsApp
# Cloud API and an SMS Messages API over HTTP) start first; messaging-templates sends to them, and
# they report every WhatsApp message delivered then read, and every SMS delivered, to its webhook
# port for the tenant `demo`, signed with the demo tenant's secrets and naming its phone number id
# and account sid (which messaging-templates checks against the accounts seeded for `demo`).
# messaging-templates encrypts the tenants' provider secrets under DW_PROVIDER_SECRETS_KEY: unless
# set, a key generated once into .dw/provider-secrets-key (kept, so what is stored stays readable).
# When notifications runs, dwctl finds it through DW_NOTIFICATIONS_ADDR (exported below like every
# service's address) and the how-to-call block shows its dwctl commands.
# Ctrl-C or SIGTERM stops exactly the processes this script started; if a service dies, the script
# says so, stops the others and exits non-zero.
#
# Environment (all optional):
#   DW_JWT_SECRET        HS256 secret for tokens (default: the documented development secret)
#   DW_PROFILE           debug | release                                  (debug)
#   DW_BIND_HOST         address the services listen on                   (127.0.0.1)
#   DW_LOG_FORMAT        pretty | json                                    (pretty)
#   RUST_LOG             log filter                                       (info)
#   DW_READY_TIMEOUT     seconds to wait for each service's /readyz       (60)
#   DW_STOP_TIMEOUT      seconds to wait for a service to exit on stop    (35)
#   DW_SEED              0 to skip seeding the demo tenant                (1)
#   DW_FAKE_PROVIDERS    0 to not start the fake providers (messaging-templates then calls
#                        DW_WHATSAPP_BASE_URL / DW_SMS_BASE_URL from the environment)  (1)
#   DW_FAKE_WHATSAPP_PORT / DW_FAKE_SMS_PORT   ports of the fake providers          (8091 / 8092)
#   DW_MESSAGING_WEBHOOK_PORT  messaging-templates' provider webhooks (HTTP)        (8083)
#   DW_WEBHOOK_PUBLIC_URL  the URL providers call those webhooks on (a tunnel's, for a real
#                        provider); SMS callbacks are signed over it; the fakes call it too
#                        (http://<bind host>:<webhook port>)
#   DW_PROVIDER_SECRETS_KEY  messaging-templates' key for the provider secrets (base64 of 32 bytes;
#                        default: generated once into .dw/provider-secrets-key)
#   DW_DEMO_WHATSAPP_APP_SECRET, DW_DEMO_WHATSAPP_VERIFY_TOKEN, DW_DEMO_SMS_AUTH_TOKEN: the demo
#                        tenant's provider secrets, seeded and used by the fakes (default: dw-local-…)
#   DW_WHATSAPP_PHONE_NUMBER_ID, DW_SMS_ACCOUNT_SID: the accounts sends go out from, also the demo
#                        tenant's (default: 100000000000001, AC00000000000000000000000000000001)
#   DW_PG_HOST/PORT/USER, DW_NATS_HOST/PORT: see scripts/lib.sh
#   OTEL_EXPORTER_OTLP_ENDPOINT and any other variable are passed through to the services.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DW_LOG_TAG=cluster
cd "$DW_ROOT"

profile=${DW_PROFILE:-debug}
bind_host=${DW_BIND_HOST:-127.0.0.1}
ready_timeout=${DW_READY_TIMEOUT:-60}
stop_timeout=${DW_STOP_TIMEOUT:-35}
call_host=$bind_host
[[ "$call_host" == 0.0.0.0 || "$call_host" == "::" ]] && call_host=127.0.0.1

# messaging-templates' provider webhooks and the local fake providers (see the header).
messaging_webhook_port=${DW_MESSAGING_WEBHOOK_PORT:-8083}
fake_whatsapp_port=${DW_FAKE_WHATSAPP_PORT:-8091}
fake_sms_port=${DW_FAKE_SMS_PORT:-8092}
# Where the providers call the webhooks: the SMS provider signs that URL (X-Twilio-Signature), so
# messaging-templates verifies against it and the fakes post to it.
webhook_public_url=${DW_WEBHOOK_PUBLIC_URL:-http://$call_host:$messaging_webhook_port}
webhook_public_url=${webhook_public_url%/}
# The demo tenant's provider accounts (seeded below with `dwctl providers set`): the accounts sends
# go out from, so that the providers' callbacks about them name the demo tenant's.
demo_phone_number_id=${DW_WHATSAPP_PHONE_NUMBER_ID:-100000000000001}
demo_account_sid=${DW_SMS_ACCOUNT_SID:-AC00000000000000000000000000000001}
demo_whatsapp_app_secret=${DW_DEMO_WHATSAPP_APP_SECRET:-dw-local-whatsapp-app-secret}
demo_whatsapp_verify_token=${DW_DEMO_WHATSAPP_VERIFY_TOKEN:-dw-local-verify-token}
demo_sms_auth_token=${DW_DEMO_SMS_AUTH_TOKEN:-dw-local-sms-auth-token}
# The tenant whose webhook URLs the fake providers call (the demo tenant seeded below).
fake_webhook_tenant=demo

if [[ -n "${DW_JWT_SECRET:-}" ]]; then
    jwt_from_env=1
    log "using DW_JWT_SECRET from the environment"
else
    jwt_from_env=0
    DW_JWT_SECRET=$DW_DEV_JWT_SECRET
    log "DW_JWT_SECRET not set: using the documented development secret"
fi
export DW_JWT_SECRET
export DW_LOG_FORMAT=${DW_LOG_FORMAT:-pretty}
export RUST_LOG=${RUST_LOG:-info}
export NATS_URL
NATS_URL=$(dw_nats_url)

# ---------------------------------------------------------------------------------------------
# which services

dw_load_services
run_idx=()
for i in "${!DW_SVC_NAMES[@]}"; do
    if svc_exists "${DW_SVC_NAMES[$i]}"; then
        run_idx+=("$i")
    fi
done
((${#run_idx[@]} > 0)) || die "no service of $DW_SERVICES_FILE exists under services/"
log "services in this workspace: $(for i in "${run_idx[@]}"; do printf '%s\n' "${DW_SVC_NAMES[$i]}"; done | paste -sd' ')"

# Every service's address for dwctl and for services that call each other (DW_<NAME>_ADDR).
messaging=0
for i in "${run_idx[@]}"; do
    export "DW_$(svc_env_name "${DW_SVC_NAMES[$i]}")_ADDR=http://$call_host:${DW_SVC_GRPC[$i]}"
    [[ "${DW_SVC_NAMES[$i]}" == messaging-templates ]] && messaging=1
done
# dwctl reads messaging-templates' address from DW_MESSAGING_ADDR.
((messaging)) && export DW_MESSAGING_ADDR=$DW_MESSAGING_TEMPLATES_ADDR
fake_name=fake-providers
fakes=0
if ((messaging)) && [[ "${DW_FAKE_PROVIDERS:-1}" != 0 ]]; then
    fakes=1
fi

# Refuse to start over a running cluster: a port in use would make a service fail anyway.
for i in "${run_idx[@]}"; do
    ports=("${DW_SVC_GRPC[$i]}" "${DW_SVC_METRICS[$i]}")
    [[ "${DW_SVC_NAMES[$i]}" == messaging-templates ]] && ports+=("$messaging_webhook_port")
    for port in "${ports[@]}"; do
        if tcp_open "$call_host" "$port"; then
            die "port $port (${DW_SVC_NAMES[$i]}) is already in use on $call_host: is another cluster running? Stop it first."
        fi
    done
done
if ((fakes)); then
    for port in "$fake_whatsapp_port" "$fake_sms_port"; do
        if tcp_open "$call_host" "$port"; then
            die "port $port (fake-providers) is already in use on $call_host: is another cluster running? Stop it first (or DW_FAKE_PROVIDERS=0)."
        fi
    done
fi

# ---------------------------------------------------------------------------------------------
# build

build_args=(build --workspace --bins)
[[ "$profile" == release ]] && build_args+=(--release)
[[ "$profile" == debug || "$profile" == release ]] || die "DW_PROFILE must be debug or release"
log "cargo ${build_args[*]}"
build_start=$SECONDS
cargo "${build_args[@]}" || die "the build failed"
log "built in $((SECONDS - build_start))s"
bin_dir="$(cargo_target_dir)/$profile"
dwctl="$bin_dir/dwctl"
for i in "${run_idx[@]}"; do
    [[ -x "$bin_dir/${DW_SVC_NAMES[$i]}" ]] ||
        die "no binary $bin_dir/${DW_SVC_NAMES[$i]} after the build (the package must have a bin named like it)"
done
# The upstream event-log tokens (role `service`, 30 days) of the services that consume others.
mkdir -p "$DW_ROOT/.dw"
for consumer in task-distribution notifications; do
    (umask 077 && "$dwctl" token --tenant platform --sub "$consumer" --role service --ttl-seconds 2592000 \
        >"$DW_ROOT/.dw/$consumer-service-token") || die "could not mint the service token of $consumer"
done
if ((fakes)); then
    [[ -x "$bin_dir/fake-providers" ]] || die "no binary $bin_dir/fake-providers after the build (services/fake-providers)"
fi

# ---------------------------------------------------------------------------------------------
# process management

pids=() names=()
stopping=0
log_dir="$DW_STATE_DIR/logs"
mkdir -p "$log_dir"

width=0
for i in "${run_idx[@]}"; do
    ((${#DW_SVC_NAMES[$i]} > width)) && width=${#DW_SVC_NAMES[$i]}
done
((fakes && ${#fake_name} > width)) && width=${#fake_name}
colors=(32 35 34 33 36 31)

stop_all() {
    ((stopping)) && return 0
    stopping=1
    local i alive=() order=()
    # The last started first: the services before the fake providers they call.
    for i in "${!pids[@]}"; do
        order=("$i" ${order[@]+"${order[@]}"})
    done
    for i in ${order[@]+"${order[@]}"}; do
        if kill -0 "${pids[$i]}" 2>/dev/null; then
            log "stopping ${names[$i]} (pid ${pids[$i]})"
            kill -TERM "${pids[$i]}" 2>/dev/null || true
            alive+=("$i")
        fi
    done
    local deadline=$((SECONDS + stop_timeout)) still
    while ((${#alive[@]} > 0)); do
        still=()
        for i in "${alive[@]}"; do
            kill -0 "${pids[$i]}" 2>/dev/null && still+=("$i")
        done
        alive=(${still[@]+"${still[@]}"})
        ((${#alive[@]} == 0)) && break
        if ((SECONDS >= deadline)); then
            for i in "${alive[@]}"; do
                warn "${names[$i]} did not stop within ${stop_timeout}s: killing it"
                kill -KILL "${pids[$i]}" 2>/dev/null || true
            done
            break
        fi
        sleep 0.2
    done
    wait 2>/dev/null || true
    ((${#pids[@]} > 0)) && log "stopped everything this script started (logs in $log_dir)"
    return 0
}

on_signal() {
    trap '' INT TERM
    echo >&2
    log "received SIG$1: shutting down"
    stop_all
    exit 0
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM
trap 'stop_all' EXIT

# env_for INDEX: the environment of a service process.
env_for() {
    local i=$1
    printf '%s\n' \
        "DATABASE_URL=$(dw_pg_url "${DW_SVC_DBS[$i]}")" \
        "GRPC_ADDR=$bind_host:${DW_SVC_GRPC[$i]}" \
        "METRICS_ADDR=$bind_host:${DW_SVC_METRICS[$i]}"
    if [[ "${DW_SVC_NAMES[$i]}" == messaging-templates ]]; then
        printf '%s\n' \
            "DW_WEBHOOK_ADDR=$bind_host:$messaging_webhook_port" \
            "DW_WEBHOOK_PUBLIC_URL=$webhook_public_url" \
            "DW_PROVIDER_SECRETS_KEY=$(local_provider_secrets_key)" \
            "DW_WEBHOOK_ALLOWED_HOSTS=${DW_WEBHOOK_ALLOWED_HOSTS:-127.0.0.1,localhost}"
        if ((fakes)); then
            printf '%s\n' \
                "DW_WHATSAPP_BASE_URL=http://$call_host:$fake_whatsapp_port/v21.0" \
                "DW_SMS_BASE_URL=http://$call_host:$fake_sms_port/2010-04-01"
        fi
    fi
    if [[ "${DW_SVC_NAMES[$i]}" == task-distribution || "${DW_SVC_NAMES[$i]}" == notifications ]]; then
        # A consumer created after its stream dropped old events reads them from the owner's
        # ReadEvents (deploy/README.md, Streams), with a service token minted below.
        printf '%s\n' "DW_SERVICE_TOKEN_FILE=$DW_ROOT/.dw/${DW_SVC_NAMES[$i]}-service-token"
        [[ -n "${DW_AGENT_SESSIONS_ADDR:-}" ]] && printf '%s\n' "DW_AGENT_SESSIONS_EVENT_LOG_URL=$DW_AGENT_SESSIONS_ADDR"
        [[ -n "${DW_MESSAGING_TEMPLATES_ADDR:-}" ]] && printf '%s\n' "DW_MESSAGING_EVENT_LOG_URL=$DW_MESSAGING_TEMPLATES_ADDR"
        if [[ "${DW_SVC_NAMES[$i]}" == notifications && -n "${DW_TASK_DISTRIBUTION_ADDR:-}" ]]; then
            printf '%s\n' "DW_DISTRIBUTION_EVENT_LOG_URL=$DW_TASK_DISTRIBUTION_ADDR"
        fi
    fi
    if [[ "${DW_SVC_NAMES[$i]}" == notifications ]]; then
        # Local webhook receivers and push services live on this machine.
        printf '%s\n' \
            "DW_WEBHOOK_ALLOWED_HOSTS=${DW_WEBHOOK_ALLOWED_HOSTS:-127.0.0.1,localhost}" \
            "DW_PUSH_ALLOWED_HOSTS=${DW_PUSH_ALLOWED_HOSTS:-127.0.0.1,localhost}" \
            "DW_VAPID_PRIVATE_KEY=$(local_vapid_key)"
    fi
}

# local_vapid_key: the local cluster's VAPID private key (generated once into .dw/, so browser
# subscriptions survive restarts), or DW_VAPID_PRIVATE_KEY when set.
local_vapid_key() {
    if [[ -n "${DW_VAPID_PRIVATE_KEY:-}" ]]; then
        printf '%s' "$DW_VAPID_PRIVATE_KEY"
        return
    fi
    local file="$DW_ROOT/.dw/vapid-private-key"
    if [[ ! -s "$file" ]]; then
        mkdir -p "$DW_ROOT/.dw"
        python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())' >"$file"
    fi
    tr -d '\n' <"$file"
}

# local_provider_secrets_key: the key messaging-templates encrypts the tenants' provider secrets
# with (generated once into .dw/, so the secrets stored survive restarts), or
# DW_PROVIDER_SECRETS_KEY when set.
local_provider_secrets_key() {
    if [[ -n "${DW_PROVIDER_SECRETS_KEY:-}" ]]; then
        printf '%s' "$DW_PROVIDER_SECRETS_KEY"
        return
    fi
    local file="$DW_ROOT/.dw/provider-secrets-key"
    if [[ ! -s "$file" ]]; then
        mkdir -p "$DW_ROOT/.dw"
        (umask 077 && python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())' >"$file")
    fi
    tr -d '\n' <"$file"
}

# fake_env: the environment of the fake providers: they sign as the demo tenant's provider
# accounts and name its phone number id (the SMS callbacks name the account the SMS was sent from).
fake_env() {
    local hooks="$webhook_public_url/webhooks"
    printf '%s\n' \
        "DW_FAKE_WHATSAPP_ADDR=$call_host:$fake_whatsapp_port" \
        "DW_FAKE_SMS_ADDR=$call_host:$fake_sms_port" \
        "DW_FAKE_STATUS_WEBHOOK=$hooks/whatsapp/$fake_webhook_tenant" \
        "DW_FAKE_WHATSAPP_APP_SECRET=$demo_whatsapp_app_secret" \
        "DW_FAKE_WHATSAPP_PHONE_NUMBER_ID=$demo_phone_number_id" \
        "DW_FAKE_SMS_STATUS_WEBHOOK=$hooks/sms/$fake_webhook_tenant/status" \
        "DW_FAKE_SMS_AUTH_TOKEN=$demo_sms_auth_token"
}

# spawn_logged NAME [VAR=VALUE...]: run $bin_dir/NAME in the background with these variables,
# its output prefixed with its name and copied to $log_dir/NAME.log.
spawn_logged() {
    local name=$1 prefix color
    shift
    color=${colors[$((${#pids[@]} % ${#colors[@]}))]}
    prefix=$(printf "%-${width}s |" "$name")
    [[ -t 1 && -z "${NO_COLOR:-}" ]] && prefix=$'\e['"${color}m$prefix"$'\e[0m'
    : >"$log_dir/$name.log"
    env "$@" "$bin_dir/$name" </dev/null \
        > >(trap '' INT; tee -a "$log_dir/$name.log" | sed -u "s/^/$prefix /") 2>&1 &
    pids+=("$!")
    names+=("$name")
}

# start_service INDEX: run the service in the background (see spawn_logged).
start_service() {
    local i=$1 name=${DW_SVC_NAMES[$1]} env_lines=() extra=""
    mapfile -t env_lines < <(env_for "$i")
    spawn_logged "$name" "${env_lines[@]}"
    [[ "$name" == messaging-templates ]] && extra=", webhooks http://$call_host:$messaging_webhook_port"
    log "started $name (pid ${pids[-1]}): grpc $bind_host:${DW_SVC_GRPC[$i]}, metrics http://$call_host:${DW_SVC_METRICS[$i]}/metrics$extra, db ${DW_SVC_DBS[$i]}"
}

# start_fakes: run the fake providers and wait until both answer.
start_fakes() {
    local env_lines=() port deadline
    mapfile -t env_lines < <(fake_env)
    spawn_logged "$fake_name" "${env_lines[@]}"
    log "started $fake_name (pid ${pids[-1]}): WhatsApp http://$call_host:$fake_whatsapp_port, SMS http://$call_host:$fake_sms_port, status webhooks to $webhook_public_url/webhooks/{whatsapp,sms}/$fake_webhook_tenant"
    deadline=$((SECONDS + ready_timeout))
    for port in "$fake_whatsapp_port" "$fake_sms_port"; do
        until [[ "$(http_status "$call_host" "$port" /healthz)" == 200 ]]; do
            if dead=$(first_dead); then
                report_dead_and_exit "$dead"
            fi
            if ((SECONDS >= deadline)); then
                warn "$fake_name does not answer on http://$call_host:$port/healthz after ${ready_timeout}s"
                stop_all
                exit 1
            fi
            sleep 0.1
        done
    done
    log "$fake_name is ready"
}

# first_dead: print the index (into pids) of a started process that is gone, or fail.
first_dead() {
    local i
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[$i]}" 2>/dev/null; then
            printf '%s' "$i"
            return 0
        fi
    done
    return 1
}

report_dead_and_exit() {
    local i=$1 rc=0
    wait "${pids[$i]}" 2>/dev/null || rc=$?
    warn "${names[$i]} (pid ${pids[$i]}) exited with status $rc; its log: $log_dir/${names[$i]}.log"
    stop_all
    exit 1
}

# ---------------------------------------------------------------------------------------------
# migrations, start, readiness

for i in "${run_idx[@]}"; do
    name=${DW_SVC_NAMES[$i]}
    log "applying migrations: $name migrate (database ${DW_SVC_DBS[$i]})"
    mapfile -t env_lines < <(env_for "$i")
    timeout 120 env "${env_lines[@]}" "$bin_dir/$name" migrate </dev/null 2>&1 | sed -u "s/^/$name migrate | /" ||
        die "migrations of $name failed"
done

((fakes)) && start_fakes

for i in "${run_idx[@]}"; do
    start_service "$i"
done

for i in "${run_idx[@]}"; do
    name=${DW_SVC_NAMES[$i]}
    port=${DW_SVC_METRICS[$i]}
    deadline=$((SECONDS + ready_timeout))
    started=$SECONDS
    until [[ "$(http_status "$call_host" "$port" /readyz)" == 200 ]]; do
        if dead=$(first_dead); then
            report_dead_and_exit "$dead"
        fi
        ((SECONDS < deadline)) || {
            warn "$name is not ready after ${ready_timeout}s (http://$call_host:$port/readyz answers $(http_status "$call_host" "$port" /readyz))"
            stop_all
            exit 1
        }
        sleep 0.25
    done
    log "$name is ready (/readyz 200 after $((SECONDS - started))s)"
done

# ---------------------------------------------------------------------------------------------
# demo tenant

if [[ "${DW_SEED:-1}" != 0 ]]; then
    [[ -x "$dwctl" ]] || die "no dwctl binary at $dwctl"
    log "seeding the demo tenant: dwctl demo seed --tenant demo"
    if ! "$dwctl" demo seed --tenant demo </dev/null; then
        warn "dwctl demo seed failed"
        stop_all
        exit 1
    fi
    if ((messaging)); then
        # The secrets go in the environment, not on the command line (visible to every user).
        log "seeding the demo tenant's provider accounts: dwctl providers set (WhatsApp $demo_phone_number_id, SMS $demo_account_sid)"
        if ! env DW_PROVIDER_WHATSAPP_APP_SECRET="$demo_whatsapp_app_secret" \
            DW_PROVIDER_WHATSAPP_VERIFY_TOKEN="$demo_whatsapp_verify_token" \
            DW_PROVIDER_SMS_AUTH_TOKEN="$demo_sms_auth_token" \
            "$dwctl" --tenant demo --sub manager-1 --role manager providers set \
            --whatsapp-phone-number-id "$demo_phone_number_id" --sms-account-sid "$demo_account_sid" </dev/null; then
            warn "dwctl providers set failed"
            stop_all
            exit 1
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
# how to call it

as_addr=${DW_AGENT_SESSIONS_ADDR:-http://$call_host:50051}
as_hostport=${as_addr#http://}
td_addr=""
for i in "${run_idx[@]}"; do
    if [[ "${DW_SVC_NAMES[$i]}" == task-distribution ]]; then
        td_addr=${DW_TASK_DISTRIBUTION_ADDR:-http://$call_host:${DW_SVC_GRPC[$i]}}
    fi
done
td_hostport=${td_addr#http://}
nt_addr=""
for i in "${run_idx[@]}"; do
    if [[ "${DW_SVC_NAMES[$i]}" == notifications ]]; then
        nt_addr=${DW_NOTIFICATIONS_ADDR:-http://$call_host:${DW_SVC_GRPC[$i]}}
    fi
done
nt_hostport=${nt_addr#http://}
{
    echo
    echo "================================================================================"
    echo " Digital Workspace is running. Ctrl-C stops it."
    echo
    for i in "${run_idx[@]}"; do
        printf '   %-22s grpc %s:%s   metrics http://%s:%s/metrics\n' "${DW_SVC_NAMES[$i]}" \
            "$call_host" "${DW_SVC_GRPC[$i]}" "$call_host" "${DW_SVC_METRICS[$i]}"
    done
    if ((messaging)); then
        printf '   %-22s provider webhooks http://%s:%s/webhooks/{whatsapp,sms}/<tenant>\n' "" "$call_host" "$messaging_webhook_port"
    fi
    if ((fakes)); then
        printf '   %-22s WhatsApp http://%s:%s/v21.0   SMS http://%s:%s/2010-04-01\n' "$fake_name" \
            "$call_host" "$fake_whatsapp_port" "$call_host" "$fake_sms_port"
    fi
    echo
    echo " In another terminal, from $DW_ROOT:"
    if ((jwt_from_env)); then
        echo "   export DW_JWT_SECRET=<the secret you exported>"
    else
        echo "   export DW_JWT_SECRET=$DW_DEV_JWT_SECRET"
    fi
    for i in "${run_idx[@]}"; do
        v="DW_$(svc_env_name "${DW_SVC_NAMES[$i]}")_ADDR"
        echo "   export $v=${!v}"
    done
    ((messaging)) && echo "   export DW_MESSAGING_ADDR=$DW_MESSAGING_ADDR"
    echo "   export PATH=\"$(dirname "$dwctl"):\$PATH\"   # dwctl, as the seed's instructions above use it"
    echo
    echo " dwctl (users of the demo tenant: see the seed output above, e.g. the agent ana):"
    echo "   export DW_TOKEN=\$(dwctl token --tenant demo --sub ana --role agent)"
    echo "   dwctl day start"
    echo "   dwctl --help            # every RPC is a subcommand; --json for raw output"
    echo "   dwctl events tail       # the events arriving on JetStream, with their headers"
    echo
    echo " Any gRPC client through reflection (grpcurl shown):"
    echo "   grpcurl -plaintext $as_hostport grpc.health.v1.Health/Check"
    echo "   grpcurl -plaintext -H \"authorization: Bearer \$DW_TOKEN\" $as_hostport list"
    echo "   grpcurl -plaintext -H \"authorization: Bearer \$DW_TOKEN\" $as_hostport describe dw.agentsessions.v1.ServiceDayService"
    echo "   grpcurl -plaintext -H \"authorization: Bearer \$DW_TOKEN\" -d '{\"request_id\":\"day-1\"}' \\"
    echo "       $as_hostport dw.agentsessions.v1.ServiceDayService/StartServiceDay"
    if [[ -n "$td_addr" ]]; then
        echo "   grpcurl -plaintext -H \"authorization: Bearer \$DW_TOKEN\" $td_hostport describe dw.distribution.v1.DistributionService"
    fi
    if [[ -n "$nt_addr" ]]; then
        echo "   grpcurl -plaintext -H \"authorization: Bearer \$DW_TOKEN\" $nt_hostport describe dw.notifications.v1.NotificationService"
    fi
    echo
    if [[ -n "$td_addr" ]]; then
        echo " Tasks (task-distribution). Without DW_TOKEN, dwctl mints a token from --tenant/--sub/--role:"
        echo "   unset DW_TOKEN"
        echo "   dwctl --tenant demo --sub ana --role agent day start"
        echo "   dwctl --tenant demo --sub ana --role agent tasks watch     # ana's tasks as they come; keep it open"
        echo "   dwctl --tenant demo --sub crm-bot --role service tasks create --department support \\"
        echo "       --channel whatsapp --client-name 'Maria Souza' --phone +5511912345678 --subject 'Order 1234'"
        echo "   dwctl demo inbound --tenant demo --phone +5511987654321 --name 'Joao Pereira' --text 'Hello, I need help'"
        echo "   dwctl --tenant demo --sub ana --role agent tasks mine"
        echo "   dwctl --tenant demo --sub ana --role agent tasks complete --task-id <TASK_ID>"
        echo "   dwctl --tenant demo --sub manager-1 --role manager tasks stats"
        echo "   dwctl --tenant demo --sub manager-1 --role manager tasks search --client-name maria"
        echo "   dwctl --tenant demo --sub manager-1 --role manager tasks explain --task-id <TASK_ID>"
        echo "   dwctl events tail --stream DW_DISTRIBUTION --from-start"
        echo
    fi
    if ((messaging)); then
        echo " Templates and contacts (messaging-templates; the template ids are in the seed output above):"
        echo "   dwctl --tenant demo --sub ana --role agent contacts search --name jose"
        echo "   dwctl --tenant demo --sub ana --role agent templates list"
        echo "   dwctl --tenant demo --sub ana --role agent templates send --template-id <ORDER_SHIPPED_ID> \\"
        echo "       --contact-id <CONTACT_ID> --var 'José' --var A-1234 --header-image-url https://images.example.com/acme/pedido.jpg"
        echo "   dwctl --tenant demo --sub ana --role agent messages wait --message-id <MESSAGE_ID> --status delivered"
        echo "   dwctl --tenant demo --sub ana --role agent templates preview --template-id <APPOINTMENT_ID> --var 12/05 --var 14h30"
        if ((fakes)); then
            echo "   (sends go to $fake_name, which reports WhatsApp messages delivered then read ~300 ms later,"
            echo "    SMS delivered, to the demo tenant's webhooks, signed with its provider secrets)"
        fi
        echo "   dwctl --tenant demo --sub manager-1 --role manager providers get   # the demo tenant's provider accounts"
        echo "   dwctl events tail --stream DW_MESSAGING --from-start"
        echo
    fi
    if [[ -n "$nt_addr" ]]; then
        echo " Notifications (notifications): the single-notifications log (every template sent, with its status"
        echo " timeline) and an agent's live notifications (a client writes, a task is assigned, a send failed):"
        echo "   dwctl --tenant demo --sub ana --role agent notifications list --channel whatsapp"
        echo "   dwctl --tenant demo --sub ana --role agent notifications list --channel sms --status failed"
        echo "   dwctl --tenant demo --sub ana --role agent notifications get --message-id <MESSAGE_ID>   # with its timeline"
        echo "   dwctl --tenant demo --sub ana --role agent notifications subscribe   # keep it open; --json: one object per line"
        if [[ -n "$td_addr" ]]; then
            echo "   dwctl demo inbound --tenant demo --phone +5511987654321 --name 'José Silva' --text 'Olá, preciso de ajuda'"
            echo "       (with ana's day started, her subscription shows the task assigned, then the message)"
        fi
        echo "   dwctl --tenant demo --sub ana --role agent notifications subscribe --after <SEQUENCE>   # resume: exactly what was missed"
        echo "   dwctl --tenant demo --sub manager-1 --role manager notifications list --agent ana --all"
        echo
    fi
    echo " Logs are also written to $log_dir/<service>.log"
    echo "================================================================================"
    echo
} >&2

# ---------------------------------------------------------------------------------------------
# foreground: watch the services until a signal or a death

while true; do
    if dead=$(first_dead); then
        report_dead_and_exit "$dead"
    fi
    sleep 1 &
    wait $! 2>/dev/null || true
done
