#!/usr/bin/env bash
# Check the deployment files (`make deploy-check`, also part of `make test`):
#   1. render every overlay under deploy/overlays/ and deploy/postgres with `kubectl kustomize`
#      (or `kustomize build`) into .dw/deploy/<target>.yaml;
#   2. scripts/check-manifests.py, in one Python process:
#      - schema: Kubernetes kinds with kubernetes-validate (PyPI, installed once into the
#        virtualenv .dw/venv) in strict mode, custom resources (ServiceMonitor, PrometheusRule,
#        CloudNativePG, Barman Cloud ObjectStore) against the JSON schemas of deploy/schemas/ (an
#        object neither knows is an error: kubernetes-validate alone only warns about it);
#      - policy: probes, security, grace period vs drain, Service/PDB/HPA/NetworkPolicy/
#        ServiceMonitor per service, configuration vs the code, Secrets rendered or documented,
#        dev/prod profiles, Postgres databases and backups, NATS values, Dockerfile.
# Without kubectl or kustomize the overlays cannot be rendered: the script says so and checks
# only the YAML syntax. When the validator cannot be installed (no PyPI), the schema step is
# skipped with a warning and the policy checks still run. A rendering, schema or policy error fails
# the check (exit status 1).
#
# Environment: DW_K8S_VERSION  oldest Kubernetes version to validate against (1.30.0: the native
#                              preStop sleep action and gRPC probes are on by default from there)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
DW_LOG_TAG=deploy-check
cd "$DW_ROOT"

k8s_version=${DW_K8S_VERSION:-1.30.0}
venv="$DW_STATE_DIR/venv"
requirements=("kubernetes-validate==1.37.0" "PyYAML>=6")
out="$DW_STATE_DIR/deploy"
failed=0

# Rendered targets: each overlay, and the production PostgreSQL (applied on its own).
targets=()
for dir in deploy/overlays/*/; do
    [[ -f "$dir/kustomization.yaml" ]] && targets+=("${dir%/}")
done
((${#targets[@]} > 0)) || die "no overlay with a kustomization.yaml under deploy/overlays/"
[[ -f deploy/postgres/kustomization.yaml ]] && targets+=(deploy/postgres)

# --- the validator (a virtualenv with kubernetes-validate and PyYAML) -------------------------
ensure_validator() {
    local stamp="$venv/.dw-requirements" want="${requirements[*]}"
    if [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    have python3 || {
        warn "no python3: cannot install kubernetes-validate"
        return 1
    }
    log "installing ${requirements[*]} into $venv"
    if ! python3 -m venv --clear "$venv" >/dev/null 2>&1; then
        warn "python3 -m venv failed (on Debian: apt-get install python3-venv)"
        return 1
    fi
    if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "${requirements[@]}" </dev/null; then
        warn "pip could not install ${requirements[*]}"
        return 1
    fi
    printf '%s' "$want" >"$stamp"
}

validator=0
ensure_validator && validator=1
py=""
check_args=(--k8s-version "$k8s_version")
if ((validator)); then
    py="$venv/bin/python"
elif have python3 && python3 -c 'import yaml' 2>/dev/null; then
    py=python3
    check_args+=(--no-schema)
    warn "kubernetes-validate unavailable: schema validation skipped, policy checks only"
fi

# --- render ----------------------------------------------------------------------------------
render=()
if have kubectl; then
    render=(kubectl kustomize)
elif have kustomize; then
    render=(kustomize build)
fi

if ((${#render[@]} == 0)); then
    warn "kubectl (and kustomize) not found: the overlays cannot be rendered here; checking YAML syntax only (install kubectl for the full check)"
    mapfile -t files < <(find deploy -name '*.yaml' -o -name '*.yml' | sort)
    if [[ -n "$py" ]]; then
        "$py" -u scripts/check-manifests.py --syntax-only "${files[@]}" || failed=1
    else
        warn "no PyYAML either: the YAML files were not checked"
    fi
    ((failed)) && die "deploy-check failed"
    log "deploy-check passed (syntax only: kubectl missing)"
    exit 0
fi

mkdir -p "$out"
rm -f "$out"/*.yaml
rendered=()
for target in "${targets[@]}"; do
    name=$(basename "$target")
    if "${render[@]}" "$target" >"$out/$name.yaml"; then
        log "rendered $target -> ${out#"$DW_ROOT"/}/$name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
        rendered+=("$out/$name.yaml")
    else
        warn "${render[*]} $target failed"
        failed=1
    fi
done

# --- schema and policy -------------------------------------------------------------------------
if [[ -z "$py" ]]; then
    warn "no usable Python (python3 with venv, or PyYAML): schema and policy checks cannot run"
    failed=1
elif ((${#rendered[@]} > 0)); then
    log "schema and policy checks (scripts/check-manifests.py)"
    "$py" -u scripts/check-manifests.py "${check_args[@]}" \
        --nats-values deploy/nats/values-prod.yaml --dockerfile deploy/Dockerfile \
        "${rendered[@]}" || failed=1
fi

((failed)) && die "deploy-check failed"
log "deploy-check passed: ${targets[*]}"
