#!/usr/bin/env python3
"""Schema and policy checks of the deployment files (used by scripts/deploy-check.sh).

    check-manifests.py [options] RENDERED.yaml...   check kustomize output, one file per target
    check-manifests.py --syntax-only FILE...        only parse the YAML files

A rendered file is named after its target: `dev.yaml` and `prod.yaml` (deploy/overlays/*),
`postgres.yaml` (deploy/postgres). Other overlay names get the checks that hold everywhere.

Schema. Kubernetes kinds are validated with kubernetes-validate in strict mode (an unknown field
is an error). kubernetes-validate has no schema for custom resources: for an unknown
apiVersion/kind it only prints a warning and passes, which would let a ServiceMonitor, a
PrometheusRule or a CloudNativePG Cluster through unchecked, and a typo in a core apiVersion
(`apps/v2`) too. So every object whose apiVersion/kind has a schema in deploy/schemas/
(`x-kubernetes-group-version-kind`) is validated against it with jsonschema, every other object
with kubernetes-validate, and an object neither knows is an error.

Policy. For every Deployment labelled app.kubernetes.io/part-of=digital-workspace (the platform's
services, not the dev overlay's throw-away infrastructure):
  - pod and containers: non-root, seccomp RuntimeDefault, read-only root filesystem, no privilege
    escalation, all capabilities dropped, CPU/memory requests and limits;
  - an init container running `migrate` with the service's image;
  - startup and readiness probes: the native gRPC probe on the gRPC port (GET /readyz on the metrics
    port when the gRPC port has TLS); liveness: GET /healthz on the metrics port (dependency-free,
    see deploy/README.md);
  - terminationGracePeriodSeconds >= preStop + the service's drain bound + margin;
  - a Service (named ports grpc and metrics), a PodDisruptionBudget that lets a drain progress,
    a NetworkPolicy (ingress on its ports, egress to every port its configuration names), a
    ServiceMonitor on the metrics port, and a HorizontalPodAutoscaler where the profile wants one;
  - its configuration: every variable is one the service's code reads (scanned from
    services/<service>/src and the shared crates), every secret-like variable the code reads comes
    from a Secret (otherwise the service runs on its development default), ConfigMaps exist,
    Secrets are rendered or documented in deploy/README.md (Secrets table).
  - topologySpreadConstraints by zone and by node (no pod anti-affinity), connection age on, and
    migrations by an init container or an Argo CD PreSync hook Job (deploy/components/);
  - alerts: a runbook_url into an existing section of docs/runbooks.md (or deploy/README.md), and
    RPC error ratios on grpc-kit's server-fault codes only; NATS maxSize/GOMEMLIMIT below their limits.
Profiles: dev (1 replica, no HPA, stream replicas 1, every Secret generated) and prod (HPA floor
3, no Deployment replicas, stream replicas 3 <= NATS cluster size, ServiceMonitor, rules and
dashboard). Also checked: the CloudNativePG objects (a database and owner role per service,
backups), the NATS Helm values, and the Dockerfile (multi-stage, fetch then offline locked build,
non-root runtime).
"""

import argparse
import functools
import glob
import json
import math
import os
import re
import sys
from urllib.parse import urlparse

try:
    import yaml
except ImportError:  # pragma: no cover - the caller checks first
    print("check-manifests: PyYAML is not installed", file=sys.stderr)
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PART_OF = ("app.kubernetes.io/part-of", "digital-workspace")

# --- facts from the code, with where they come from ------------------------------------------
# Server::builder().timeout(30 s) in services/common/grpc-kit/src/bootstrap.rs: the longest an
# in-flight RPC keeps the drain waiting.
RPC_TIMEOUT_SECONDS = 30
# messaging-templates' provider retry backoff (config.rs: 0.2 + 0.5 + 1 + 2 s): with
# DW_PROVIDER_MAX_ATTEMPTS x DW_PROVIDER_TIMEOUT_MS it bounds a dispatch in hand at SIGTERM.
PROVIDER_BACKOFF_SECONDS = 4
PROVIDER_DEFAULTS = {"DW_PROVIDER_MAX_ATTEMPTS": "5", "DW_PROVIDER_TIMEOUT_MS": "10000"}
GRACE_MARGIN_SECONDS = 5
# The gRPC codes grpc-kit counts as the server's own failures (is_server_error in this file): the
# only codes an error-ratio alert may page on.
OBSERVABILITY_RS = "services/common/grpc-kit/src/observability.rs"
# Spread keys every service Deployment must have a topologySpreadConstraint for.
SPREAD_KEYS = ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
# Documents an alert's runbook_url may point into (path suffix of the URL -> file).
RUNBOOK_DOCS = ("docs/runbooks.md", "deploy/README.md")
ARGO_HOOK = "argocd.argoproj.io/hook"
# Variables a service reads without naming them in its own code.
IMPLICIT_ENV = {"RUST_LOG"}  # tracing EnvFilter::try_from_default_env
IMPLICIT_ENV_PREFIXES = ("OTEL_", "POD_")  # the OpenTelemetry SDK; fieldRefs used in OTEL_RESOURCE_ATTRIBUTES
# Crates every service's configuration goes through.
SHARED_CONFIG_CRATES = ("services/common/grpc-kit/src", "services/common/telemetry/src")
# Values that must come from a Secret whatever their name.
SECRET_ENV = {"DATABASE_URL"}
# Secrets a service does not read once it verifies the identity provider's tokens (DW_JWT_JWKS_URL).
UNUSED_WITH_IDP = {"DW_JWT_SECRET", "DW_JWT_SECRET_FILE"}
# A path to a mounted token, read only when an upstream's event log is configured
# (DW_<UPSTREAM>_EVENT_LOG_URL): without one it is not needed; with one the service does not start
# without it.
SERVICE_TOKEN_FILE = "DW_SERVICE_TOKEN_FILE"
SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PRIVATE_KEY)")
# Services calling HTTPS endpoints that no variable names (Web Push services, tenants' webhooks).
HTTPS_CLIENTS = {"notifications"}
DEFAULT_PORTS = {"nats": 4222, "http": 80, "https": 443, "postgres": 5432, "postgresql": 5432}

PROFILES = {
    "dev": {"hpa": False, "replicas": 1, "stream_replicas": 1, "servicemonitor": False,
            "external_secrets": False, "observability": False},
    "prod": {"hpa": True, "min_replicas": 3, "stream_replicas": 3, "servicemonitor": True,
             "external_secrets": True, "observability": True, "zone_spread": "DoNotSchedule",
             "monitoring_label": "release"},
}


def profile_of(overlay):
    """An overlay's profile: its own name, or the one it extends (`prod-argocd` is prod)."""
    if overlay in PROFILES:
        return PROFILES[overlay]
    return PROFILES.get(overlay.split("-", 1)[0], {})


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def rel(path):
    return os.path.relpath(path, ROOT)


def selects(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def meta(obj):
    return obj.get("metadata") or {}


def name_of(obj):
    return meta(obj).get("name", "?")


class Report:
    """Errors and notes of one target."""

    def __init__(self, title):
        self.title = title
        self.errors, self.notes, self.summary = [], [], []

    def error(self, message):
        if message not in self.errors:
            self.errors.append(message)

    def note(self, message):
        self.notes.append(message)

    def print(self):
        print(f"  {self.title}: {'FAILED' if self.errors else 'ok'}")
        for line in self.summary:
            print(f"    {line}")
        for line in self.notes:
            print(f"    note: {line}")
        for line in self.errors:
            print(f"    error: {line}")
        return not self.errors


# --- schema ------------------------------------------------------------------------------------
class Schemas:
    """kubernetes-validate for Kubernetes kinds, deploy/schemas/*.json for custom resources."""

    def __init__(self, k8s_version, schemas_dir):
        import jsonschema  # noqa: F401  (a dependency of kubernetes-validate)
        import kubernetes_validate.utils as kvu

        self.kvu = kvu
        self.k8s_version = k8s_version
        # kubernetes-validate re-reads its 1 MB definitions file for every object: keep them.
        kvu.schema_contents = functools.lru_cache(maxsize=None)(kvu.schema_contents)
        self.custom, self.files = {}, {}
        for path in sorted(glob.glob(os.path.join(schemas_dir, "*.json"))):
            with open(path, encoding="utf-8") as f:
                schema = json.load(f)
            jsonschema.Draft202012Validator.check_schema(schema)
            validator = jsonschema.Draft202012Validator(schema)
            gvk = schema.get("x-kubernetes-group-version-kind")
            if gvk:
                self.custom[(f"{gvk['group']}/{gvk['version']}", gvk["kind"])] = (validator, rel(path))
            self.files[os.path.basename(path)] = validator

    def kinds(self):
        return sorted(f"{kind} ({api})" for api, kind in self.custom)

    def errors(self, obj):
        api, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api, str) or not isinstance(kind, str):
            return ["no apiVersion/kind"]
        custom = self.custom.get((api, kind))
        if custom:
            validator, source = custom
            return [f"{fmt_path(e.absolute_path)}: {short_message(e)} (schema {source})"
                    for e in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))]
        try:
            self.kvu.validate(obj, self.k8s_version, strict=True)
        except self.kvu.ValidationError as e:
            return [f"{fmt_path(e.path)}: {e.message} (Kubernetes {e.version}, strict)"]
        except self.kvu.SchemaNotFoundError:
            return [f"unknown kind {kind} {api}: not a Kubernetes {self.k8s_version} kind and no schema in deploy/schemas/"]
        return []

    def validate_file(self, schema_file, data):
        validator = self.files[schema_file]
        return [f"{fmt_path(e.absolute_path)}: {short_message(e)}" for e in validator.iter_errors(data)]


def short_message(error):
    """jsonschema's message, without the whole offending object when it is long."""
    if len(error.message) <= 200:
        return error.message
    return f"does not satisfy `{error.validator}`: {json.dumps(error.validator_value)[:160]}"


def fmt_path(path):
    return ".".join(str(p) for p in path) or "(root)"


def check_schema(docs, schemas, report):
    for obj in docs:
        for message in schemas.errors(obj):
            report.error(f"schema: {obj.get('kind')} {name_of(obj)}: {message}")


# --- the code's configuration --------------------------------------------------------------------
ENV_READ = re.compile(r'(?:\bvar|\bparsed|\bsecret|\breadable_file|\bpath_var|env::var|env::var_os|ConfigError::Missing)\(\s*"([A-Z][A-Z0-9_]*)"')
# Variables without a default: the service refuses to start without them.
ENV_REQUIRED = re.compile(r'ConfigError::Missing\(\s*"([A-Z][A-Z0-9_]*)"')


@functools.lru_cache(maxsize=None)
def env_read_by(service):
    """The variables a service's code reads (None when its sources are not here)."""
    src = os.path.join(ROOT, "services", service, "src")
    if not os.path.isdir(src):
        return None
    names = set()
    for folder in (src, *(os.path.join(ROOT, c) for c in SHARED_CONFIG_CRATES)):
        for path in glob.glob(os.path.join(folder, "**", "*.rs"), recursive=True):
            with open(path, encoding="utf-8") as f:
                names.update(ENV_READ.findall(f.read()))
    return frozenset(n for n in names if not n.startswith("DW_TEST_"))


@functools.lru_cache(maxsize=None)
def env_required_by(service):
    """The variables a service does not start without (empty when its sources are not here)."""
    src = os.path.join(ROOT, "services", service, "src")
    names = set()
    for folder in (src, *(os.path.join(ROOT, c) for c in SHARED_CONFIG_CRATES)):
        for path in glob.glob(os.path.join(folder, "**", "*.rs"), recursive=True):
            with open(path, encoding="utf-8") as f:
                names.update(ENV_REQUIRED.findall(f.read()))
    return frozenset(names)


def secret_like(name):
    """A variable whose value is a secret; `*_FILE` names a mounted file, not a secret itself."""
    return name in SECRET_ENV or (bool(SECRET_NAME.search(name)) and not name.endswith("_FILE"))


def documented_secrets(readme):
    """(secret, key) pairs of the Secrets table in deploy/README.md: rows `| \\`name\\` | \\`key\\` | ...`,
    a blank first cell continuing the previous secret."""
    pairs, current = set(), None
    if not os.path.exists(readme):
        return pairs
    row = re.compile(r"^\|\s*(`([a-z0-9][a-z0-9.-]*)`)?\s*\|\s*`([A-Za-z0-9_.-]+)`\s*\|")
    with open(readme, encoding="utf-8") as f:
        for line in f:
            m = row.match(line)
            if not m:
                if not line.startswith("|"):
                    current = None
                continue
            current = m.group(2) or current
            if current:
                pairs.add((current, m.group(3)))
    return pairs


def documented_env(readme):
    if not os.path.exists(readme):
        return set()
    with open(readme, encoding="utf-8") as f:
        return set(re.findall(r"`([A-Z][A-Z0-9_]{2,})`", f.read()))


# --- Kubernetes objects ------------------------------------------------------------------------
def port_matches(spec_port, name, number):
    return spec_port == name or (number is not None and spec_port == number)


def rule_allows(rule, port, protocol="TCP"):
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        start = p.get("port")
        if start is None:
            return True
        if isinstance(start, int) and start <= port <= p.get("endPort", start):
            return True
    return False


def url_port(url):
    try:
        parsed = urlparse(url)
        return parsed.port or DEFAULT_PORTS.get(parsed.scheme)
    except ValueError:
        return None


def prestop_seconds(container):
    pre = ((container.get("lifecycle") or {}).get("preStop") or {})
    if "sleep" in pre:
        return int(pre["sleep"].get("seconds", 0))
    command = (pre.get("exec") or {}).get("command") or []
    if len(command) == 2 and command[0] == "sleep":
        return int(command[1])
    return 0


def drain_seconds(service, env):
    """How long SIGTERM handling can take, from the code's bounds and the configuration."""
    drain = RPC_TIMEOUT_SECONDS
    if service == "messaging-templates":
        attempts = int(env.get("DW_PROVIDER_MAX_ATTEMPTS") or PROVIDER_DEFAULTS["DW_PROVIDER_MAX_ATTEMPTS"])
        timeout_ms = int(env.get("DW_PROVIDER_TIMEOUT_MS") or PROVIDER_DEFAULTS["DW_PROVIDER_TIMEOUT_MS"])
        drain = max(drain, math.ceil(attempts * timeout_ms / 1000) + PROVIDER_BACKOFF_SECONDS)
    return drain


def check_security(where, pod, containers, report):
    psc = pod.get("securityContext") or {}
    if not psc.get("runAsNonRoot"):
        report.error(f"{where}: pod securityContext.runAsNonRoot is not true")
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext") or {}
        seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        if seccomp != "RuntimeDefault":
            report.error(f"{cw}: seccompProfile is not RuntimeDefault")
        if not sc.get("readOnlyRootFilesystem"):
            report.error(f"{cw}: securityContext.readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            report.error(f"{cw}: securityContext.allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            report.error(f"{cw}: capabilities.drop does not contain ALL")
        if (sc.get("runAsUser", psc.get("runAsUser")) or 0) == 0:
            report.error(f"{cw}: runs as UID 0 (set runAsUser)")
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    report.error(f"{cw}: no resources.{part}.{r}")


def container_env(c, configmaps, report, where, check_secrets=True):
    """Plain values (ConfigMap data and `value`s) and the secret references of a container."""
    values, secret_refs, sources = {}, {}, {}
    for src in c.get("envFrom") or []:
        cm = (src.get("configMapRef") or {}).get("name")
        if cm:
            if cm not in configmaps:
                report.error(f"{where}: ConfigMap {cm} is referenced but not rendered")
                continue
            for k, v in (configmaps[cm].get("data") or {}).items():
                values[k] = v
                sources[k] = f"ConfigMap {cm}"
                if check_secrets and secret_like(k) and v:
                    report.error(f"{where}: ConfigMap {cm} holds {k}: secrets belong in a Secret (even when an env "
                                 "entry overrides it, the value is in Git)")
        sref = (src.get("secretRef") or {}).get("name")
        if sref:
            secret_refs[f"*{sref}"] = (sref, None)
    for e in c.get("env") or []:
        name, vf = e.get("name"), e.get("valueFrom") or {}
        if "value" in e:
            values[name] = e["value"]
            sources[name] = "a plain value"
        elif "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            secret_refs[name] = (ref.get("name"), ref.get("key"))
            values.pop(name, None)
        elif "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            cm = configmaps.get(ref.get("name"))
            if cm is None:
                report.error(f"{where}: ConfigMap {ref.get('name')} is referenced but not rendered")
            else:
                values[name] = (cm.get("data") or {}).get(ref.get("key"), "")
                sources[name] = f"ConfigMap {ref.get('name')}"
        else:
            values[name] = ""  # fieldRef / resourceFieldRef
            sources[name] = "the downward API"
    return values, secret_refs, sources


class Context:
    """What the targets share: documentation, schemas, cross-target facts."""

    def __init__(self, args, schemas):
        self.args = args
        self.schemas = schemas
        self.secrets_doc = documented_secrets(args.secrets_doc)
        self.env_doc = documented_env(args.config_doc)
        self.facts = {}  # target -> facts for the cross-checks


def check_deployment(dep, objects, profile, ctx, report, facts):
    name = name_of(dep)
    where = f"Deployment {name}"
    spec = dep.get("spec") or {}
    template = spec.get("template") or {}
    pod = template.get("spec") or {}
    pod_labels = (template.get("metadata") or {}).get("labels") or {}
    containers = pod.get("containers") or []
    inits = pod.get("initContainers") or []
    main = next((c for c in containers if c.get("name") == name), containers[0] if containers else {})
    configmaps = {name_of(cm): cm for cm in objects.get("ConfigMap", [])}
    secrets = {name_of(s): s for s in objects.get("Secret", [])}

    check_security(where, pod, containers + inits, report)

    # Migrations first, with the same image: an init container, or a PreSync hook Job
    # (deploy/components/migration-job) that runs before Argo CD syncs the Deployment.
    migrate = [c for c in inits if runs_migrate(c)]
    hook_jobs = migrate_jobs(name, main, objects, report)
    if not migrate and not hook_jobs:
        report.error(f"{where}: nothing runs `migrate` (neither an init container nor a PreSync hook Job "
                     "running the service's image): the service itself does not migrate (DW_RUN_MIGRATIONS=false)")
    elif migrate and migrate[0].get("image") != main.get("image"):
        report.error(f"{where}: the migrate init container runs {migrate[0].get('image')}, not {main.get('image')}")
    facts.setdefault("migrations", {})[name] = ("init container" if migrate else "") + \
        (" + " if migrate and hook_jobs else "") + ("PreSync Job" if hook_jobs else "")

    check_spread(where, pod, pod_labels, profile, report)
    check_connection_age(where, container_env(main, configmaps, Report("scratch"), where)[0], report)

    # Ports and probes.
    ports = {p.get("name"): p.get("containerPort") for p in main.get("ports") or []}
    for pname in ("grpc", "metrics"):
        if pname not in ports:
            report.error(f"{where}: no container port named {pname}")
    # The kubelet's gRPC probe speaks plaintext only: with TLS on the gRPC port
    # (deploy/components/grpc-tls) readiness is GET /readyz on the metrics port instead.
    grpc_tls = any(e.get("name") == "DW_GRPC_TLS_CERT_FILE" for e in main.get("env") or [])
    for probe in ("startupProbe", "readinessProbe"):
        if grpc_tls:
            http = (main.get(probe) or {}).get("httpGet") or {}
            if http.get("path") != "/readyz" or http.get("port") not in ("metrics", ports.get("metrics")):
                report.error(f"{where}: {probe} must be GET /readyz on the metrics port: the gRPC port has TLS "
                             "(DW_GRPC_TLS_CERT_FILE), which the kubelet's gRPC probe cannot speak")
            continue
        grpc = (main.get(probe) or {}).get("grpc") or {}
        if not grpc or grpc.get("port") != ports.get("grpc"):
            report.error(f"{where}: {probe} is not the native gRPC probe on the gRPC port {ports.get('grpc')}")
    live = (main.get("livenessProbe") or {}).get("httpGet") or {}
    if live.get("path") != "/healthz" or live.get("port") not in ("metrics", ports.get("metrics")):
        report.error(f"{where}: livenessProbe is not GET /healthz on the metrics port "
                     "(a dependency-aware liveness probe restarts every pod during a database outage)")

    # Configuration.
    values, secret_refs, sources = container_env(main, configmaps, report, where)
    read = env_read_by(name)
    if read is None:
        report.note(f"{where}: services/{name}/src not found, configuration names not checked")
    else:
        for var in sorted(set(values) | {k for k in secret_refs if not k.startswith("*")}):
            if var not in read and var not in IMPLICIT_ENV and not var.startswith(IMPLICIT_ENV_PREFIXES):
                report.error(f"{where}: {var} (from {sources.get(var, 'a Secret')}) is not read by {name} (typo?)")
        env_from_secrets = [sname for sname, key in secret_refs.values() if key is None]

        def from_secret(var):
            if var in secret_refs:
                return True
            # envFrom secretRef: a rendered Secret must have the key; an external one may.
            return any(sname not in secrets or var in {**(secrets[sname].get("data") or {}),
                                                       **(secrets[sname].get("stringData") or {})}
                       for sname in env_from_secrets)

        for var in sorted(read):
            if var in UNUSED_WITH_IDP and values.get("DW_JWT_JWKS_URL"):
                continue
            if var == SERVICE_TOKEN_FILE:
                urls = sorted(k for k, v in values.items() if k.endswith("_EVENT_LOG_URL") and v)
                if urls and not values.get(var):
                    report.error(f"{where}: {', '.join(urls)} set without {var} (the service would not start)")
                continue
            if secret_like(var) and not from_secret(var):
                unset = ("the service would not start" if var in env_required_by(name)
                         else "the service would run on its development default")
                report.error(f"{where}: {var} does not come from a Secret"
                             + (f" (it is set from {sources[var]})" if var in sources else f" (unset: {unset})"))
    for var, value in values.items():
        if secret_like(var) and value:
            report.error(f"{where}: {var} is set from {sources.get(var)}: secrets belong in a Secret")
    for var, (sname, key) in secret_refs.items():
        if sname in secrets:
            data = {**(secrets[sname].get("data") or {}), **(secrets[sname].get("stringData") or {})}
            if key is not None and key not in data:
                report.error(f"{where}: {var} references key {key} that Secret {sname} does not have")
        else:
            facts.setdefault("external_secrets", set()).add((sname, key))
    for c in inits:
        _, init_refs, _ = container_env(c, configmaps, report, f"{where} init container {c.get('name')}",
                                        check_secrets=False)
        for sname, key in init_refs.values():
            if sname not in secrets:
                facts.setdefault("external_secrets", set()).add((sname, key))

    stream_replicas = values.get("DW_STREAM_REPLICAS", "1")
    if "stream_replicas" in profile and str(profile["stream_replicas"]) != str(stream_replicas):
        report.error(f"{where}: DW_STREAM_REPLICAS={stream_replicas}, the {report.title} profile wants "
                     f"{profile['stream_replicas']}")
    facts.setdefault("stream_replicas", set()).add(int(stream_replicas))
    pool = int(values.get("DW_DB_MAX_CONNECTIONS") or 16)
    if name == "messaging-templates":
        # The dispatcher's own pool: two connections per hand-over, plus one.
        pool += 2 * int(values.get("DW_DISPATCH_CONCURRENCY") or 8) + 1
    facts.setdefault("db_max_connections", {})[name] = pool

    # Shutdown: grace >= preStop + drain + margin.
    grace = pod.get("terminationGracePeriodSeconds", 30)
    prestop = prestop_seconds(main)
    drain = drain_seconds(name, values)
    if grace < prestop + drain + GRACE_MARGIN_SECONDS:
        report.error(f"{where}: terminationGracePeriodSeconds {grace} < preStop {prestop} s + drain {drain} s + "
                     f"margin {GRACE_MARGIN_SECONDS} s")

    # Service.
    services = [s for s in objects.get("Service", []) if selects((s.get("spec") or {}).get("selector"), pod_labels)]
    if not services:
        report.error(f"{where}: no Service selects its pods")
    for svc in services:
        names = {p.get("name"): p for p in (svc.get("spec") or {}).get("ports") or []}
        for pname in [p for p in ports if p]:
            if pname not in names:
                report.error(f"{where}: Service {name_of(svc)} has no port named {pname}")

    # PodDisruptionBudget.
    replicas = spec.get("replicas")
    hpas = [h for h in objects.get("HorizontalPodAutoscaler", [])
            if ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"].get("name") == name]
    floor = (hpas[0]["spec"].get("minReplicas", 1) if hpas else (replicas if replicas is not None else 1))
    pdbs = [p for p in objects.get("PodDisruptionBudget", [])
            if selects(((p.get("spec") or {}).get("selector") or {}).get("matchLabels"), pod_labels)]
    if not pdbs:
        report.error(f"{where}: no PodDisruptionBudget selects its pods")
    for pdb in pdbs:
        pspec = pdb.get("spec") or {}
        if "minAvailable" in pspec and isinstance(pspec["minAvailable"], int) and pspec["minAvailable"] >= floor:
            report.error(f"{where}: PodDisruptionBudget {name_of(pdb)} minAvailable {pspec['minAvailable']} >= "
                         f"{floor} replicas: no node drain can evict it")
        if pspec.get("maxUnavailable") in (0, "0%"):
            report.error(f"{where}: PodDisruptionBudget {name_of(pdb)} maxUnavailable 0 blocks every drain")

    # Replicas and autoscaling.
    if profile.get("hpa") is True:
        if not hpas:
            report.error(f"{where}: no HorizontalPodAutoscaler (the {report.title} profile wants one)")
        elif replicas is not None:
            report.error(f"{where}: spec.replicas is set although HPA {name_of(hpas[0])} owns the count "
                         "(every apply would reset it)")
    elif profile.get("hpa") is False and hpas:
        report.error(f"{where}: HorizontalPodAutoscaler {name_of(hpas[0])} in the {report.title} profile")
    for hpa in hpas:
        hspec = hpa["spec"]
        lo, hi = hspec.get("minReplicas", 1), hspec.get("maxReplicas", 0)
        if lo > hi:
            report.error(f"{where}: HPA minReplicas {lo} > maxReplicas {hi}")
        if "min_replicas" in profile and lo < profile["min_replicas"]:
            report.error(f"{where}: HPA minReplicas {lo} < {profile['min_replicas']}")
        if not any(((m.get("resource") or {}).get("name") == "cpu") for m in hspec.get("metrics") or []):
            report.error(f"{where}: HPA {name_of(hpa)} does not scale on CPU")
        facts.setdefault("max_replicas", {})[name] = hi
    if "replicas" in profile and (replicas if replicas is not None else 1) != profile["replicas"]:
        report.error(f"{where}: replicas {replicas}, the {report.title} profile wants {profile['replicas']}")
    if not hpas:
        facts.setdefault("max_replicas", {})[name] = replicas if replicas is not None else 1

    # NetworkPolicy.
    policies = [n for n in objects.get("NetworkPolicy", [])
                if selects(((n.get("spec") or {}).get("podSelector") or {}).get("matchLabels"), pod_labels)]
    if not policies:
        report.error(f"{where}: no NetworkPolicy selects its pods")
    else:
        check_network(where, name, policies, ports, values, report)

    # ServiceMonitor.
    monitors = []
    for sm in objects.get("ServiceMonitor", []):
        sel = ((sm.get("spec") or {}).get("selector") or {}).get("matchLabels")
        for svc in services:
            if selects(sel, meta(svc).get("labels")):
                svc_ports = {p.get("name") for p in (svc.get("spec") or {}).get("ports") or []
                             if p.get("targetPort") in ("metrics", ports.get("metrics"))}
                if any(e.get("port") in svc_ports for e in (sm.get("spec") or {}).get("endpoints") or []):
                    monitors.append(sm)
    if profile.get("servicemonitor") and not monitors:
        report.error(f"{where}: no ServiceMonitor scrapes the metrics port of its Service")

    image = main.get("image") or ""
    if profile.get("external_secrets") and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
        report.error(f"{where}: image {image!r} has no fixed tag")
    for var, value in values.items():
        if "REPLACE_WITH" in str(value):
            facts.setdefault("placeholders", set()).add(f"{name} {var}")

    scale = (f"HPA {floor}..{hpas[0]['spec'].get('maxReplicas')}" if hpas else f"replicas={floor}")
    report.summary.append(f"{name}: {scale} grace={grace}s (needs {prestop}+{drain}+{GRACE_MARGIN_SECONDS}) "
                          f"DW_STREAM_REPLICAS={stream_replicas} image={image}")


def runs_migrate(container):
    return "migrate" in (container.get("args") or []) + (container.get("command") or [])


def migrate_jobs(service, main, objects, report):
    """The PreSync hook Jobs that migrate `service`'s database with its image (errors for near misses)."""
    found = []
    db_secret = next((((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                      for e in main.get("env") or [] if e.get("name") == "DATABASE_URL"), None)
    for job in objects.get("Job", []):
        containers = ((((job.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or [])
        for c in containers:
            if not runs_migrate(c):
                continue
            refs = {e.get("name"): ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                    for e in c.get("env") or []}
            if refs.get("DATABASE_URL") != db_secret:
                continue  # another service's Job
            where = f"Job {name_of(job)}"
            hook = (meta(job).get("annotations") or {}).get(ARGO_HOOK)
            if hook != "PreSync":
                report.error(f"{where}: migrates {service} but is not an Argo CD PreSync hook "
                             f"({ARGO_HOOK}: {hook!r}): it would run beside the new pods, not before them")
            elif c.get("image") != main.get("image"):
                report.error(f"{where}: runs {c.get('image')}, not {service}'s image {main.get('image')}")
            elif any(src.get("configMapRef") for src in c.get("envFrom") or []):
                report.error(f"{where}: reads a ConfigMap: a PreSync hook runs before the new (hashed) ConfigMap exists")
            else:
                found.append(job)
    return found


def check_spread(where, pod, pod_labels, profile, report):
    """topologySpreadConstraints by zone and by node, on the service's own pods; no anti-affinity."""
    if ((pod.get("affinity") or {}).get("podAntiAffinity")):
        report.error(f"{where}: pod anti-affinity: use topologySpreadConstraints (zone and node) instead")
    constraints = {c.get("topologyKey"): c for c in pod.get("topologySpreadConstraints") or []}
    for key in SPREAD_KEYS:
        c = constraints.get(key)
        if c is None:
            report.error(f"{where}: no topologySpreadConstraint on {key}")
            continue
        if not selects(((c.get("labelSelector") or {}).get("matchLabels")), pod_labels):
            report.error(f"{where}: the topologySpreadConstraint on {key} does not select the service's pods")
        if (c.get("maxSkew") or 0) < 1:
            report.error(f"{where}: the topologySpreadConstraint on {key} has no maxSkew >= 1")
    zone = constraints.get(SPREAD_KEYS[0]) or {}
    want = profile.get("zone_spread")
    if want and zone and zone.get("whenUnsatisfiable") != want:
        report.error(f"{where}: zone spread is {zone.get('whenUnsatisfiable')}, the {report.title} profile wants {want}")


def check_connection_age(where, env, report):
    """Long-lived gRPC clients must be moved to new connections, or added replicas get no traffic."""
    try:
        age = int(env.get("DW_GRPC_MAX_CONNECTION_AGE_SECONDS") or 300)
        grace = int(env.get("DW_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS") or 30)
    except ValueError as e:
        report.error(f"{where}: DW_GRPC_MAX_CONNECTION_AGE_*: {e}")
        return
    if age == 0:
        report.error(f"{where}: DW_GRPC_MAX_CONNECTION_AGE_SECONDS=0: clients stay on their first replica "
                     "forever and replicas the HPA adds get no traffic from them")
    elif grace < RPC_TIMEOUT_SECONDS:
        report.error(f"{where}: DW_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS={grace} < the {RPC_TIMEOUT_SECONDS} s "
                     "RPC timeout (the service refuses to start)")


def client_namespace_rule(rule, grpc_port):
    """A namespaceSelector on a label of the namespaces' own choosing (not the name) on gRPC."""
    if not any(port_matches(p.get("port"), "grpc", grpc_port) for p in rule.get("ports") or []):
        return False
    for peer in rule.get("from") or []:
        labels = ((peer.get("namespaceSelector") or {}).get("matchLabels") or {})
        if labels and "kubernetes.io/metadata.name" not in labels and not peer.get("podSelector"):
            return True
    return False


def check_network(where, service, policies, ports, env, report):
    types = set()
    ingress, egress = [], []
    for p in policies:
        pspec = p.get("spec") or {}
        types.update(pspec.get("policyTypes") or [])
        ingress += pspec.get("ingress") or []
        egress += pspec.get("egress") or []
    for t in ("Ingress", "Egress"):
        if t not in types:
            report.error(f"{where}: no NetworkPolicy restricts {t}")
    for pname, number in ports.items():
        if not any(any(port_matches(pp.get("port"), pname, number) for pp in r.get("ports") or [])
                   or not r.get("ports") for r in ingress):
            report.error(f"{where}: the NetworkPolicy admits nothing on port {pname}")
    if "grpc" in ports and not any(client_namespace_rule(r, ports["grpc"]) for r in ingress):
        report.error(f"{where}: the NetworkPolicy admits gRPC from no labelled client namespace "
                     "(namespaceSelector on a label such as digital-workspace.io/client, deploy/README.md, Network)")
    needed = {53: "DNS", 5432: "PostgreSQL"}
    for var in ("NATS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        if env.get(var):
            needed.setdefault(url_port(env[var]), var)
    for var, value in env.items():
        if var.endswith("_BASE_URL") and value:
            needed.setdefault(url_port(value), var)
    if env.get("DW_JWT_JWKS_URL"):
        # The identity provider's keys; the service fetches them over HTTPS only (a placeholder: 443).
        needed.setdefault(url_port(env["DW_JWT_JWKS_URL"]) or 443, "DW_JWT_JWKS_URL (identity provider)")
    if service in HTTPS_CLIENTS:
        needed.setdefault(443, "HTTPS (push services, webhooks)")
    for port, why in sorted(needed.items(), key=lambda kv: kv[0] or 0):
        if port is None:
            report.error(f"{where}: cannot tell the port of {why}")
            continue
        protocols = ("UDP", "TCP") if port == 53 else ("TCP",)
        for protocol in protocols:
            if not any(rule_allows(r, port, protocol) for r in egress):
                report.error(f"{where}: the NetworkPolicy blocks egress to {port}/{protocol} ({why})")


def check_overlay(path, docs, ctx):
    overlay = os.path.splitext(os.path.basename(path))[0]
    profile = profile_of(overlay)
    report = Report(f"overlay {overlay}" + ("" if profile else " (no profile: common checks only)"))
    if ctx.schemas:
        check_schema(docs, ctx.schemas, report)
    objects = {}
    for d in docs:
        objects.setdefault(d.get("kind"), []).append(d)
    facts = ctx.facts.setdefault(overlay, {})
    deployments = [d for d in objects.get("Deployment", []) if (meta(d).get("labels") or {}).get(PART_OF[0]) == PART_OF[1]]
    if not deployments:
        report.error(f"no Deployment labelled {PART_OF[0]}={PART_OF[1]}")
    for dep in sorted(deployments, key=name_of):
        try:
            check_deployment(dep, objects, profile, ctx, report, facts)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            report.error(f"Deployment {name_of(dep)}: cannot check: {e!r}")

    external = facts.get("external_secrets", set())
    if external:
        if profile.get("external_secrets") is False:
            for sname, key in sorted(external, key=str):
                report.error(f"Secret {sname} (key {key}) is referenced but not generated (the {overlay} profile "
                             "generates every Secret)")
        else:
            undocumented = sorted((s, k) for s, k in external if (s, k) not in ctx.secrets_doc and
                                  not (k is None and any(s == d for d, _ in ctx.secrets_doc)))
            for sname, key in undocumented:
                report.error(f"Secret {sname} (key {key}) is neither rendered nor documented in "
                             f"{rel(ctx.args.secrets_doc)} (Secrets table)")
            report.note("Secrets to create beforehand: " + ", ".join(
                f"{s}/{k}" for s, k in sorted(external, key=str)))
    if facts.get("placeholders"):
        report.note("values to set before applying: " + ", ".join(sorted(facts["placeholders"])))

    for job in objects.get("Job", []):
        if (meta(job).get("labels") or {}).get(PART_OF[0]) == PART_OF[1]:
            jpod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
            check_security(f"Job {name_of(job)}", jpod, (jpod.get("containers") or []) + (jpod.get("initContainers") or []), report)
    for rule in objects.get("PrometheusRule", []):
        check_alert_rules(rule, report, facts)
    if "runbook base URL (runbook_url)" in facts.get("placeholders", ()):
        report.note("runbook_url still points at REPLACE_WITH…: set runbookBase (knob 4 of the overlay)")
    label = profile.get("monitoring_label")
    if label:
        monitored = objects.get("ServiceMonitor", []) + objects.get("PrometheusRule", [])
        values = {(meta(o).get("labels") or {}).get(label) for o in monitored}
        if None in values or "" in values or len(values) > 1:
            report.error(f"ServiceMonitors and PrometheusRules must all carry the same `{label}` label (the one your "
                         f"Prometheus selects; knob 3 of the overlay): found {sorted(map(str, values))}")
        elif monitored:
            report.summary.append(f"ServiceMonitors and PrometheusRule labelled {label}={values.pop()}")
    if facts.get("migrations"):
        kinds = sorted(set(facts["migrations"].values()))
        report.summary.append("migrations: " + ", ".join(kinds))
    if profile.get("observability"):
        if not objects.get("PrometheusRule"):
            report.error("no PrometheusRule (deploy/observability)")
        dashboards = [c for c in objects.get("ConfigMap", []) if (meta(c).get("labels") or {}).get("grafana_dashboard")]
        if not dashboards:
            report.error("no ConfigMap labelled grafana_dashboard (deploy/observability)")
    for cm in objects.get("ConfigMap", []):
        if (meta(cm).get("labels") or {}).get("grafana_dashboard"):
            for key, value in (cm.get("data") or {}).items():
                try:
                    if "panels" not in json.loads(value):
                        report.error(f"ConfigMap {name_of(cm)}: {key} is not a Grafana dashboard (no panels)")
                except ValueError as e:
                    report.error(f"ConfigMap {name_of(cm)}: {key} is not JSON: {e}")
    return report


# --- alerts ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def server_error_codes():
    """The codes of grpc-kit's is_server_error (None when the source is not here)."""
    path = os.path.join(ROOT, OBSERVABILITY_RS)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        m = re.search(r"fn is_server_error\(code: &str\) -> bool \{\s*matches!\(code,([^)]*)\)", f.read())
    return frozenset(re.findall(r'"([A-Z_]+)"', m.group(1))) if m else None


def github_anchors(path):
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
            if m:
                text = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
                anchors.add(text.replace(" ", "-"))
    return anchors


def check_alert_rules(rule_obj, report, facts):
    """Every alert has a runbook_url into a document section that exists; RPC error-ratio alerts
    count only the server's own failures (the codes grpc-kit marks as errors)."""
    where = f"PrometheusRule {name_of(rule_obj)}"
    server_codes = server_error_codes()
    for group in (rule_obj.get("spec") or {}).get("groups") or []:
        for rule in group.get("rules") or []:
            alert = rule.get("alert")
            if not alert:
                continue
            url = (rule.get("annotations") or {}).get("runbook_url") or ""
            base, _, anchor = url.partition("#")
            doc = next((d for d in RUNBOOK_DOCS if base.endswith("/" + d)), None)
            if not url:
                report.error(f"{where}: alert {alert} has no runbook_url annotation")
            elif not re.match(r"^https?://", url) or doc is None or not anchor:
                report.error(f"{where}: alert {alert}: runbook_url {url!r} is not http(s)://…/<one of "
                             f"{', '.join(RUNBOOK_DOCS)}>#<section>")
            elif anchor not in github_anchors(os.path.join(ROOT, doc)):
                report.error(f"{where}: alert {alert}: runbook_url anchor #{anchor} is not a heading of {doc}")
            if "REPLACE_WITH" in url:
                facts.setdefault("placeholders", set()).add("runbook base URL (runbook_url)")
            expr = str(rule.get("expr") or "")
            if "dw_rpc_requests_total" not in expr or "/" not in expr:
                continue
            numerator = expr.split("/", 1)[0]
            if re.search(r'code\s*!=', numerator):
                report.error(f"{where}: alert {alert} counts every non-OK code as a failure: client errors "
                             "(INVALID_ARGUMENT, NOT_FOUND, ...) would page; match the server codes with code=~")
                continue
            m = re.search(r'code\s*=~\s*"([^"]*)"', numerator)
            if not m:
                report.error(f"{where}: alert {alert}: the numerator has no code=~\"...\" matcher of server codes")
                continue
            codes = frozenset(m.group(1).split("|"))
            if server_codes is not None and codes != server_codes:
                report.error(f"{where}: alert {alert} matches codes {sorted(codes)}; the code's server faults "
                             f"({OBSERVABILITY_RS}, is_server_error) are {sorted(server_codes)}")


# --- PostgreSQL (CloudNativePG) ------------------------------------------------------------------
def service_databases():
    """name -> database of scripts/services.list."""
    out = {}
    path = os.path.join(ROOT, "scripts", "services.list")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2:
                    out[fields[0]] = fields[1]
    return out


def check_postgres(path, docs, ctx):
    report = Report("postgres (CloudNativePG)")
    if ctx.schemas:
        check_schema(docs, ctx.schemas, report)
    clusters = [d for d in docs if d.get("kind") == "Cluster" and str(d.get("apiVersion", "")).startswith("postgresql.cnpg.io/")]
    if len(clusters) != 1:
        report.error(f"expected one CloudNativePG Cluster, found {len(clusters)}")
        return report
    cluster = clusters[0]
    cname, spec = name_of(cluster), cluster.get("spec") or {}
    facts = ctx.facts.setdefault("postgres", {})
    if (spec.get("instances") or 0) < 3:
        report.error(f"Cluster {cname}: {spec.get('instances')} instances (3 for a failover without data loss)")
    external = set()

    owners = {}  # role -> where it comes from
    initdb = (spec.get("bootstrap") or {}).get("initdb") or {}
    databases = {}
    if initdb.get("database"):
        databases[initdb["database"]] = initdb.get("owner")
        owners[initdb.get("owner")] = "initdb"
        if (initdb.get("secret") or {}).get("name"):
            external.add((initdb["secret"]["name"], "password"))
    for role in ((spec.get("managed") or {}).get("roles") or []):
        if role.get("ensure", "present") == "present" and role.get("login"):
            owners[role["name"]] = "managed role"
        if (role.get("passwordSecret") or {}).get("name"):
            external.add((role["passwordSecret"]["name"], "password"))
    for db in (d for d in docs if d.get("kind") == "Database"):
        dspec = db.get("spec") or {}
        if (dspec.get("cluster") or {}).get("name") != cname:
            report.error(f"Database {name_of(db)}: cluster {dspec.get('cluster')} is not {cname}")
        if dspec.get("ensure", "present") == "present":
            databases[dspec.get("name")] = dspec.get("owner")
            if dspec.get("databaseReclaimPolicy", "retain") != "retain":
                report.error(f"Database {name_of(db)}: databaseReclaimPolicy must be retain (deleting the object "
                             "would drop the service's event store)")
    for service, database in sorted(service_databases().items()):
        if database not in databases:
            report.error(f"no database {database} for {service} (initdb or a Database object)")
        elif databases[database] not in owners:
            report.error(f"database {database}: owner {databases[database]} is not a login role of {cname}")
    owners_seen = [databases[d] for d in databases]
    for owner in set(owners_seen):
        if owners_seen.count(owner) > 1:
            report.error(f"role {owner} owns several service databases: one role per service")

    # Backups: WAL archiving through the Barman Cloud plugin to an ObjectStore, a ScheduledBackup.
    stores = {name_of(d): d for d in docs if d.get("kind") == "ObjectStore"}
    archivers = [p for p in spec.get("plugins") or [] if p.get("isWALArchiver")]
    if not archivers:
        report.error(f"Cluster {cname}: no WAL archiver (plugins[].isWALArchiver): no point-in-time recovery")
    for plugin in archivers:
        store = (plugin.get("parameters") or {}).get("barmanObjectName")
        if store not in stores:
            report.error(f"Cluster {cname}: plugin {plugin.get('name')} names ObjectStore {store!r}, not rendered")
    for store in stores.values():
        creds = ((store.get("spec") or {}).get("configuration") or {}).get("s3Credentials") or {}
        for ref in (creds.get("accessKeyId"), creds.get("secretAccessKey")):
            if ref:
                external.add((ref.get("name"), ref.get("key")))
    if not any(((d.get("spec") or {}).get("cluster") or {}).get("name") == cname
               for d in docs if d.get("kind") == "ScheduledBackup"):
        report.error(f"Cluster {cname}: no ScheduledBackup")

    for sname, key in sorted(external, key=str):
        if (sname, key) not in ctx.secrets_doc:
            report.error(f"Secret {sname} (key {key}) is not documented in {rel(ctx.args.secrets_doc)} (Secrets table)")
    report.note("Secrets to create beforehand: " + ", ".join(f"{s}/{k}" for s, k in sorted(external, key=str)))
    max_connections = ((spec.get("postgresql") or {}).get("parameters") or {}).get("max_connections", "100")
    facts["max_connections"] = int(max_connections)
    report.summary.append(f"Cluster {cname}: {spec.get('instances')} instances, databases "
                          f"{', '.join(sorted(databases))}, max_connections={max_connections}")
    return report


# --- NATS Helm values, Dockerfile ----------------------------------------------------------------
def check_nats_values(path, ctx):
    report = Report(f"NATS Helm values ({rel(path)})")
    try:
        values = load(path)
    except (OSError, yaml.YAMLError) as e:
        report.error(f"cannot read: {e}")
        return report
    if len(values) != 1 or not isinstance(values[0], dict):
        report.error("expected one YAML mapping")
        return report
    values = values[0]
    if ctx.schemas:
        for message in ctx.schemas.validate_file("nats-helm-values.json", values):
            report.error(f"schema: {message} (deploy/schemas/nats-helm-values.json)")
    jetstream = (values.get("config") or {}).get("jetstream") or {}
    file_store = jetstream.get("fileStore") or {}
    pvc_bytes, max_bytes = quantity_bytes((file_store.get("pvc") or {}).get("size")), quantity_bytes(file_store.get("maxSize"))
    if pvc_bytes is not None and max_bytes is not None and max_bytes >= pvc_bytes:
        report.error(f"config.jetstream.fileStore.maxSize {file_store.get('maxSize')} is not below its PVC "
                     f"({file_store['pvc'].get('size')}): the disk would fill before JetStream refuses writes")
    container = values.get("container") or {}
    limit = quantity_bytes(((((container.get("merge") or {}).get("resources") or {}).get("limits") or {}).get("memory")))
    gomemlimit = quantity_bytes((container.get("env") or {}).get("GOMEMLIMIT"))
    if limit is not None and gomemlimit is not None and gomemlimit >= limit:
        report.error(f"container.env.GOMEMLIMIT {container['env']['GOMEMLIMIT']} is not below the memory limit: "
                     "the Go runtime would let the server be OOM-killed first")
    elif limit is None or gomemlimit is None:
        report.error("container.env.GOMEMLIMIT and container.merge.resources.limits.memory must both be set")
    cluster = (values.get("config") or {}).get("cluster") or {}
    ctx.facts.setdefault("nats", {})["replicas"] = cluster.get("replicas") if cluster.get("enabled") else 1
    report.summary.append(f"cluster enabled={cluster.get('enabled')} replicas={cluster.get('replicas')}, "
                          f"JetStream file store {file_store.get('maxSize')} on a {(file_store.get('pvc') or {}).get('size')} "
                          f"PVC, image tag {(container.get('image') or {}).get('tag')}, "
                          f"GOMEMLIMIT {(container.get('env') or {}).get('GOMEMLIMIT')}")
    return report


def quantity_bytes(value):
    """Bytes of a Kubernetes quantity (20Gi) or a Go GOMEMLIMIT (1800MiB); None when unset or odd."""
    units = {"": 1, "B": 1, "Ki": 2**10, "KiB": 2**10, "Mi": 2**20, "MiB": 2**20, "Gi": 2**30, "GiB": 2**30,
             "Ti": 2**40, "TiB": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", str(value or "").strip())
    if not m or m.group(2) not in units:
        return None
    return float(m.group(1)) * units[m.group(2)]


def dockerfile_stages(path):
    """The stages of a Dockerfile: base image (global ARG defaults substituted) and instructions."""
    stages, current, args = [], None, {}
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and current is None and "=" in rest:
            key, _, value = rest.partition("=")
            args[key.strip()] = value.strip()
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
            current = {"from": image, "lines": []}
            stages.append(current)
        elif current is not None:
            current["lines"].append((word, rest))
    return stages


def check_dockerfile(path):
    report = Report(f"Dockerfile ({rel(path)})")
    try:
        stages = dockerfile_stages(path)
    except OSError as e:
        report.error(f"cannot read: {e}")
        return report
    if len(stages) < 2:
        report.error("not a multi-stage build")
        return report
    fetch_at = build_at = None
    for i, stage in enumerate(stages):
        for word, rest in stage["lines"]:
            if word == "RUN" and re.search(r"\bcargo fetch\b", rest):
                fetch_at = i
                if "--locked" not in rest:
                    report.error("`cargo fetch` without --locked")
            if word == "RUN" and re.search(r"\bcargo build\b", rest):
                build_at = i
                for flag in ("--locked", "--release", "--offline"):
                    if flag not in rest:
                        report.error(f"`cargo build` without {flag}")
    if build_at is None:
        report.error("no `cargo build`")
    elif fetch_at is None or fetch_at > build_at:
        report.error("no `cargo fetch` stage before the offline build")
    final = stages[-1]
    users = [rest for word, rest in final["lines"] if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        report.error("the runtime stage does not switch to a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        report.error("the runtime USER is not numeric (runAsNonRoot cannot verify a name)")
    if any("cargo" in rest for word, rest in final["lines"] if word == "RUN"):
        report.error("the runtime stage runs cargo")
    if not any(word == "ENTRYPOINT" for word, _ in final["lines"]):
        report.error("the runtime stage has no ENTRYPOINT")
    ignore = path + ".dockerignore"
    if not os.path.exists(ignore):
        report.error(f"no {rel(ignore)} (BuildKit's Dockerfile-specific ignore file)")
    else:
        with open(ignore, encoding="utf-8") as f:
            entries = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        for must in (".git", "target"):
            if must not in entries:
                report.error(f"{rel(ignore)} does not exclude {must}")
    report.summary.append(f"{len(stages)} stages, runtime {final['from']}, USER {users[-1] if users else '-'}")
    return report


# --- cross-checks ------------------------------------------------------------------------------
def cross_checks(ctx):
    report = Report("cross-checks")
    prod, nats, pg = ctx.facts.get("prod"), ctx.facts.get("nats"), ctx.facts.get("postgres")
    if prod and nats:
        for replicas in sorted(prod.get("stream_replicas", ())):
            if replicas > (nats.get("replicas") or 1):
                report.error(f"prod DW_STREAM_REPLICAS={replicas} > {nats.get('replicas')} NATS servers "
                             "(deploy/nats/values-prod.yaml): the services could not create their streams")
        report.summary.append(f"prod stream replicas {sorted(prod.get('stream_replicas', ()))} <= "
                              f"{nats.get('replicas')} NATS servers")
    if prod and pg:
        # Per pod: the pool, plus the detached connections (relay lock, LISTENers) and a margin.
        needed = sum(prod.get("max_replicas", {}).get(s, 1) * (n + 3)
                     for s, n in prod.get("db_max_connections", {}).items())
        if needed > pg["max_connections"]:
            report.error(f"prod can open {needed} Postgres connections at maxReplicas, max_connections is "
                         f"{pg['max_connections']} (deploy/postgres/cluster-prod.yaml)")
        report.summary.append(f"prod Postgres connections at maxReplicas {needed} <= max_connections "
                              f"{pg['max_connections']}")
    # Every variable the code reads is in the configuration reference (a warning: docs drift).
    undocumented = set()
    for service in service_databases():
        for var in env_read_by(service) or ():
            if var not in ctx.env_doc:
                undocumented.add(f"{var} ({service})")
    if undocumented:
        report.note(f"read by the code but not in {rel(ctx.args.config_doc)} (Configuration reference): "
                    + ", ".join(sorted(undocumented)))
    return report


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--syntax-only", action="store_true")
    parser.add_argument("--k8s-version", default="1.30.0")
    parser.add_argument("--no-schema", action="store_true", help="policy only (kubernetes-validate unavailable)")
    parser.add_argument("--schemas", default=os.path.join(ROOT, "deploy", "schemas"))
    parser.add_argument("--secrets-doc", default=os.path.join(ROOT, "deploy", "README.md"))
    parser.add_argument("--config-doc", default=os.path.join(ROOT, "deploy", "README.md"))
    parser.add_argument("--nats-values", default=os.path.join(ROOT, "deploy", "nats", "values-prod.yaml"))
    parser.add_argument("--dockerfile", default=os.path.join(ROOT, "deploy", "Dockerfile"))
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)

    if args.syntax_only:
        bad = 0
        for path in args.files:
            try:
                load(path)
            except (OSError, yaml.YAMLError) as e:
                print(f"  {path}: {e}", file=sys.stderr)
                bad += 1
        print(f"  YAML syntax: {len(args.files) - bad} file(s) ok, {bad} bad")
        return 1 if bad else 0

    schemas = None
    if not args.no_schema:
        try:
            schemas = Schemas(args.k8s_version, args.schemas)
            print(f"  schemas: Kubernetes {args.k8s_version} (kubernetes-validate, strict) + deploy/schemas: "
                  + ", ".join(schemas.kinds()))
        except ImportError as e:
            print(f"  schemas: skipped ({e}); policy checks only", file=sys.stderr)
    ctx = Context(args, schemas)

    reports = []
    for path in args.files:
        target = os.path.splitext(os.path.basename(path))[0]
        try:
            docs = load(path)
        except (OSError, yaml.YAMLError) as e:
            bad = Report(target)
            bad.error(f"cannot read {path}: {e}")
            reports.append(bad)
            continue
        reports.append(check_postgres(path, docs, ctx) if target == "postgres" else check_overlay(path, docs, ctx))
    if args.nats_values:
        reports.append(check_nats_values(args.nats_values, ctx))
    if args.dockerfile:
        reports.append(check_dockerfile(args.dockerfile))
    reports.append(cross_checks(ctx))

    ok = True
    for report in reports:
        ok = report.print() and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
