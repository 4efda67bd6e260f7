#!/usr/bin/env bash
# Check the Kubernetes manifests (`make deploy-check`, also part of `make test`):
#   1. render every overlay under deploy/k8s/overlays/ with `kubectl kustomize` (or `kustomize
#      build`) into .dw/deploy/<overlay>.yaml;
#   2. validate the rendered objects against the Kubernetes API schemas with kubernetes-validate
#      (from PyPI, installed once into the virtualenv .dw/venv), in strict mode;
#   3. run the policy checks of scripts/check-manifests.py (probes, resources, security, ...).
# Without kubectl or kustomize the overlays cannot be rendered: the script says so and checks
# only the YAML syntax (and the schema of the plain resource files). When the validator cannot
# be installed (no PyPI), the schema step is skipped with a notice; a rendering, schema or policy
# error fails the check.
#
# Environment: DW_K8S_VERSION  oldest Kubernetes version to validate against (1.30.0)
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

overlays=()
for dir in deploy/k8s/overlays/*/; do
    [[ -f "$dir/kustomization.yaml" ]] && overlays+=("${dir%/}")
done
((${#overlays[@]} > 0)) || die "no overlay with a kustomization.yaml under deploy/k8s/overlays/"

# --- the validator (a virtualenv with kubernetes-validate and PyYAML) -------------------------
ensure_validator() {
    local stamp="$venv/.dw-requirements" want="${requirements[*]}"
    if [[ -x "$venv/bin/kubernetes-validate" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
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
if ((validator)); then
    py="$venv/bin/python"
elif have python3 && python3 -c 'import yaml' 2>/dev/null; then
    py=python3
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
    mapfile -t files < <(find deploy/k8s -name '*.yaml' -o -name '*.yml' | sort)
    if [[ -n "$py" ]]; then
        "$py" -u scripts/check-manifests.py --syntax-only "${files[@]}" || failed=1
    else
        warn "no PyYAML either: the YAML files were not checked"
    fi
    if ((validator)); then
        mapfile -t plain < <(printf '%s\n' "${files[@]}" | grep -v '/kustomization\.ya\?ml$')
        "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "${plain[@]}" || failed=1
    fi
    ((failed)) && die "deploy-check failed"
    log "deploy-check passed (syntax only: kubectl missing)"
    exit 0
fi

mkdir -p "$out"
rendered=()
for overlay in "${overlays[@]}"; do
    name=$(basename "$overlay")
    if "${render[@]}" "$overlay" >"$out/$name.yaml"; then
        log "rendered $overlay -> ${out#"$DW_ROOT"/}/$name.yaml ($(grep -c '^kind:' "$out/$name.yaml") objects)"
        rendered+=("$out/$name.yaml")
    else
        warn "${render[*]} $overlay failed"
        failed=1
    fi
done

# --- schema ----------------------------------------------------------------------------------
if ((validator)) && ((${#rendered[@]} > 0)); then
    log "kubernetes-validate --strict against Kubernetes $k8s_version"
    if "$venv/bin/kubernetes-validate" --strict --quiet -k "$k8s_version" "${rendered[@]}"; then
        log "schema: all objects valid"
    else
        failed=1
    fi
elif ((validator == 0)); then
    warn "kubernetes-validate unavailable: schema validation skipped (kustomize still parsed every file)"
fi

# --- policy ----------------------------------------------------------------------------------
if [[ -n "$py" ]] && ((${#rendered[@]} > 0)); then
    log "policy checks (scripts/check-manifests.py)"
    "$py" -u scripts/check-manifests.py "${rendered[@]}" || failed=1
elif [[ -z "$py" ]]; then
    warn "no PyYAML: policy checks skipped"
fi

((failed)) && die "deploy-check failed"
log "deploy-check passed: ${overlays[*]}"
