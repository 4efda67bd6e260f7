#!/usr/bin/env python3
"""Checks of the Kubernetes manifests beyond their schema (used by scripts/deploy-check.sh).

    check-manifests.py RENDERED.yaml...       policy checks of kustomize output, one file per overlay
    check-manifests.py --syntax-only FILE...  only parse the YAML files

For every Deployment labelled app.kubernetes.io/part-of=digital-workspace (the platform's own
services, not the local throw-away infrastructure) it checks what the platform team relies on:
named ports grpc/metrics, readiness /readyz and liveness /healthz on the metrics port, resource
requests and limits, a non-root read-only container, a grace period, a migration init container,
and a Service and a PodDisruptionBudget that select its pods. ConfigMaps referenced must be
rendered; Secrets that are not rendered are listed as prerequisites.
"""

import os
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - the caller checks first
    print("check-manifests: PyYAML is not installed", file=sys.stderr)
    sys.exit(2)

PART_OF = ("app.kubernetes.io/part-of", "digital-workspace")


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_overlay(path):
    docs = load(path)
    errors, notes = [], []
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    configmaps = {d["metadata"]["name"] for d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"] for d in by_kind.get("Secret", [])}
    external_secrets = set()
    summary = []

    for dep in by_kind.get("Deployment", []):
        meta = dep["metadata"]
        if (meta.get("labels") or {}).get(PART_OF[0]) != PART_OF[1]:
            continue
        name = meta["name"]
        where = f"{os.path.basename(path)}: Deployment {name}"
        spec = dep["spec"]
        pod = spec["template"]["spec"]
        pod_labels = spec["template"]["metadata"].get("labels") or {}
        containers = pod.get("containers") or []
        inits = pod.get("initContainers") or []

        if not (pod.get("securityContext") or {}).get("runAsNonRoot"):
            errors.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if pod.get("terminationGracePeriodSeconds") is None:
            errors.append(f"{where}: no terminationGracePeriodSeconds")
        if not any("migrate" in (c.get("args") or []) + (c.get("command") or []) for c in inits):
            errors.append(f"{where}: no init container running `migrate`")

        for c in containers + inits:
            cw = f"{where} container {c['name']}"
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in (res.get(part) or {}):
                        errors.append(f"{cw}: no resources.{part}.{r}")
            sc = c.get("securityContext") or {}
            if not sc.get("readOnlyRootFilesystem"):
                errors.append(f"{cw}: securityContext.readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cw}: securityContext.allowPrivilegeEscalation is not false")
            for src in c.get("envFrom") or []:
                ref = (src.get("configMapRef") or {}).get("name")
                if ref and ref not in configmaps:
                    errors.append(f"{cw}: ConfigMap {ref} is referenced but not rendered")
                sref = (src.get("secretRef") or {}).get("name")
                if sref and sref not in secrets:
                    external_secrets.add(sref)
            for e in c.get("env") or []:
                vf = e.get("valueFrom") or {}
                if "secretKeyRef" in vf:
                    ref = vf["secretKeyRef"]
                    if ref["name"] not in secrets:
                        external_secrets.add(f"{ref['name']} (key {ref['key']})")
                if "configMapKeyRef" in vf and vf["configMapKeyRef"]["name"] not in configmaps:
                    errors.append(f"{cw}: ConfigMap {vf['configMapKeyRef']['name']} is referenced but not rendered")

        main = containers[0] if containers else {}
        ports = {p.get("name"): p.get("containerPort") for p in main.get("ports") or []}
        for pname in ("grpc", "metrics"):
            if pname not in ports:
                errors.append(f"{where}: no container port named {pname}")
        for probe, want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = (main.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != want or get.get("port") not in ("metrics", ports.get("metrics")):
                errors.append(f"{where}: {probe} is not GET {want} on the metrics port")

        if not any(
            selects((s.get("spec") or {}).get("selector"), pod_labels) for s in by_kind.get("Service", [])
        ):
            errors.append(f"{where}: no Service selects its pods")
        if not any(
            selects(((p.get("spec") or {}).get("selector") or {}).get("matchLabels"), pod_labels)
            for p in by_kind.get("PodDisruptionBudget", [])
        ):
            errors.append(f"{where}: no PodDisruptionBudget selects its pods")

        env = {}
        for cm in by_kind.get("ConfigMap", []):
            if any(
                (src.get("configMapRef") or {}).get("name") == cm["metadata"]["name"]
                for src in main.get("envFrom") or []
            ):
                env.update(cm.get("data") or {})
        summary.append(
            f"{name}: replicas={spec.get('replicas', 1)} image={main.get('image')} "
            f"DW_STREAM_REPLICAS={env.get('DW_STREAM_REPLICAS', '-')}"
        )

    if not summary:
        errors.append(f"{os.path.basename(path)}: no Deployment labelled {PART_OF[0]}={PART_OF[1]}")
    if external_secrets:
        notes.append("Secrets to create beforehand: " + ", ".join(sorted(external_secrets)))
    return errors, summary, notes


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "--syntax-only":
        bad = 0
        for path in argv[1:]:
            try:
                load(path)
            except (OSError, yaml.YAMLError) as e:
                print(f"  {path}: {e}", file=sys.stderr)
                bad += 1
        print(f"  YAML syntax: {len(argv) - 1 - bad} file(s) ok, {bad} bad")
        return 1 if bad else 0

    failed = False
    for path in argv:
        overlay = os.path.splitext(os.path.basename(path))[0]
        try:
            errors, summary, notes = check_overlay(path)
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            errors, summary, notes = [f"{path}: cannot read: {e!r}"], [], []
        status = "FAILED" if errors else "ok"
        print(f"  overlay {overlay}: policy {status}")
        for line in summary:
            print(f"    {line}")
        for line in notes:
            print(f"    {line}")
        for line in errors:
            print(f"    error: {line}")
        failed = failed or bool(errors)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
