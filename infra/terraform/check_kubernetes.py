#!/usr/bin/env python3
"""Our own static checks of modules/aerie-kubernetes, whose providers
(kubernetes, helm) cannot be downloaded here, so `terraform validate` cannot
run on it: the module is parsed with python-hcl2 and what a deployment needs
is asserted — pinned images, readiness (/readyz) and liveness (/healthz)
probes on the port Prometheus scrapes, requests and limits, no secret in
plain text (sensitive variables without defaults, reaching pods only through
a Secret), the gateway's HorizontalPodAutoscaler and PodDisruptionBudget,
Services, NATS from its official Helm chart at a pinned version.

    python3 infra/terraform/check_kubernetes.py [MODULE_DIR]

Prints every failed check and exits 1; exits 2 when python-hcl2 is missing.
`make test-deps` installs python-hcl2 where this looks for it.
"""

import os
import pathlib
import re
import sys

HCL2_VERSION = "8.1.4"
TOOLS = pathlib.Path(os.environ.get("HOME", "/")) / ".cache/aerie-tools"
sys.path.insert(0, str(TOOLS / f"python-hcl2-{HCL2_VERSION}"))
try:
    import hcl2
except ImportError:
    print(f"python-hcl2 {HCL2_VERSION} is missing: run `make test-deps`", file=sys.stderr)
    sys.exit(2)

# Names of settings that hold a secret (a Secret's *name* is no secret).
SECRET_NAME = re.compile(r"password|secret_key|^secret$|token|database_url|dsn|credential|api_key|private_key")
NATS_CHART = "https://nats-io.github.io/k8s/helm/charts/"


def clean(value):
    """python-hcl2 8 keeps quotes around keys and literal strings: drop them."""
    if isinstance(value, dict):
        return {
            clean(k): clean(v)
            for k, v in value.items()
            if k not in ("__is_block__", "__comments__")
        }
    if isinstance(value, list):
        return [clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    return value


def load(module):
    parsed = {"resource": {}, "variable": {}, "locals": {}, "module": {}}
    for path in sorted(module.glob("*.tf")):
        with open(path) as f:
            doc = clean(hcl2.load(f))
        for block in doc.get("resource", []):
            for kind, named in block.items():
                parsed["resource"].setdefault(kind, {}).update(named)
        for kind in ("variable", "locals", "module"):
            for block in doc.get(kind, []):
                parsed[kind].update(block)
    return parsed


class Module:
    """One parsed module: its resources, variables, locals and module calls."""

    def __init__(self, path):
        self.m = load(path)

    def resources(self, kind):
        return self.m["resource"].get(kind, {})

    def variables(self):
        return self.m["variable"]

    def calls(self):
        return self.m["module"]

    def default(self, variable):
        return self.m["variable"].get(variable, {}).get("default")

    def resolve(self, value):
        """A `${local.x}` or `${var.x}` (or `${var.x.y}`) reference's value:
        the local, or the variable's default; anything else as it is."""
        if not isinstance(value, str):
            return value
        found = re.fullmatch(r"\$\{(local|var)\.([a-z0-9_]+)((?:\.[a-z0-9_]+)*)\}", value)
        if not found:
            return value
        kind, name, path = found.groups()
        target = self.m["locals"].get(name) if kind == "local" else self.default(name)
        for part in filter(None, path.split(".")):
            target = target.get(part) if isinstance(target, dict) else None
        return self.resolve(target)


def block(value):
    """A nested block's first (only) body, or {}."""
    return value[0] if isinstance(value, list) and value else {}


def dynamic(body, name):
    """The `dynamic "name"` blocks of a body."""
    return [d[name] for d in body.get("dynamic", []) if name in d]


class Checks:
    """The root module (NATS, the Secret, the calls of ./workload for the
    control plane and the gateways) and ./workload (what every pod is)."""

    def __init__(self, module):
        self.root = Module(module)
        self.workload = Module(module / "workload")
        self.failures = []

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
        return ok

    # ---- ./workload: one Deployment, Service, HPA and PDB per process kind ----

    def workload_resources(self):
        w = self.workload
        deployments = w.resources("kubernetes_deployment_v1")
        if not self.check(len(deployments) == 1, "workload: one Deployment"):
            return
        name, deployment = next(iter(deployments.items()))
        labels = block(block(deployment["spec"])["selector"]).get("match_labels")
        template = block(block(deployment["spec"])["template"])
        self.annotations(w.resolve(block(template["metadata"]).get("annotations")))
        containers = block(template["spec"]).get("container", [])
        self.check(len(containers) == 1, "workload: one container")
        for container in containers:
            self.container(container)
        target = f"kubernetes_deployment_v1.{name}"
        hpas = [
            h for h in w.resources("kubernetes_horizontal_pod_autoscaler_v2").values()
            if target in str(block(block(h["spec"])["scale_target_ref"]).get("name"))
        ]
        if self.check(len(hpas) == 1, "workload: a HorizontalPodAutoscaler (v2) of the Deployment"):
            spec = block(hpas[0]["spec"])
            self.check(block(spec["scale_target_ref"]).get("kind") == "Deployment", "HPA: kind Deployment")
            self.check(spec.get("min_replicas") == "${var.min_replicas}", "HPA: min_replicas")
            self.check(spec.get("max_replicas") == "${var.max_replicas}", "HPA: max_replicas")
            metrics = [block(m.get("resource")).get("name") for m in spec.get("metric", [])]
            self.check("cpu" in metrics, "HPA: scales on cpu")
        self.check(
            any(block(block(p["spec"])["selector"]).get("match_labels") == labels
                for p in w.resources("kubernetes_pod_disruption_budget_v1").values()),
            "workload: a PodDisruptionBudget selecting the Deployment's pods",
        )
        self.check(
            any(block(s["spec"]).get("selector") == labels
                for s in w.resources("kubernetes_service_v1").values()),
            "workload: a Service selecting the Deployment's pods",
        )

    def annotations(self, annotations):
        annotations = annotations or {}
        self.check(annotations.get("prometheus.io/scrape") == "true", "workload: prometheus.io/scrape")
        self.check(annotations.get("prometheus.io/path") == "/metrics", "workload: prometheus.io/path")
        self.check('var.ports["http"]' in str(annotations.get("prometheus.io/port")),
                   "workload: prometheus.io/port is the http port")

    def container(self, container):
        self.check(container.get("image") == "${var.image}", "workload: the container's image is var.image")
        ports = dynamic(container, "port")
        self.check([p.get("for_each") for p in ports] == ["${var.ports}"], "workload: ports from var.ports")
        validation = str(self.workload.variables().get("ports", {}).get("validation"))
        self.check("keys(var.ports)" in validation and "http" in validation, "workload: var.ports must have http")
        for probe, path in (("readiness_probe", "/readyz"), ("liveness_probe", "/healthz")):
            got = block(block(container.get(probe)).get("http_get"))
            self.check(got.get("path") == path, f"workload: {probe} on {path}")
            self.check(got.get("port") == "http", f"workload: {probe} on the http port")
        resources = block(container.get("resources"))
        self.check(resources.get("requests") == "${var.resources.requests}", "workload: resources requests")
        self.check(resources.get("limits") == "${var.resources.limits}", "workload: resources limits")
        kind = str(self.workload.variables().get("resources", {}).get("type"))
        self.check("cpu" in kind and "memory" in kind, "workload: var.resources has cpu and memory")
        self.check(not container.get("env"), "workload: no env literal in the pod spec (var.env only)")
        context = block(container.get("security_context"))
        self.check(context.get("allow_privilege_escalation") is False, "workload: no privilege escalation")

    # ---- the root: images, the calls, secrets, NATS ----

    def calls(self):
        r = self.root
        calls = r.calls()
        self.check({"control", "gateway"} <= set(calls), "module calls control and gateway")
        image = str(r.m["locals"].get("image"))
        self.check("var.image" in image and "var.image_tag" in image, "local.image: var.image and var.image_tag")
        repository, tag = r.default("image") or "", r.default("image_tag")
        self.check(":" not in repository.split("/")[-1], "var.image: the repository, its tag apart")
        self.check(bool(tag) and tag != "latest", "var.image_tag: a pinned default tag, not latest")
        for name, call in calls.items():
            self.check(call.get("source") == "./workload", f"{name}: ./workload")
            self.check(call.get("image") == "${local.image}", f"{name}: image is local.image")
            self.check(call.get("args") == [name], f"{name}: runs aerie {name}")
            self.check((call.get("ports") or {}).get("http") == 8080, f"{name}: http on 8080")
            resources = r.resolve(call.get("resources")) or {}
            for bound in ("requests", "limits"):
                for unit in ("cpu", "memory"):
                    self.check(bool((resources.get(bound) or {}).get(unit)), f"{name}: resources {bound}.{unit}")
            low, high = r.resolve(call.get("min_replicas")), r.resolve(call.get("max_replicas"))
            self.check(isinstance(low, int) and isinstance(high, int) and 2 <= low <= high,
                       f"{name}: 2 <= min_replicas <= max_replicas")
            for key in (call.get("env") or {}):
                self.check(not SECRET_NAME.search(key.lower()),
                           f"{name}: {key} in plain text in the pod spec (use the Secret)")
        gateway = calls.get("gateway", {})
        self.check((gateway.get("ports") or {}).get("mqtt") == 1883, "gateway: MQTT on 1883")
        self.check("mqtt" in (gateway.get("service_ports") or []), "gateway: the Service exposes MQTT")
        control = calls.get("control", {})
        self.check("kubernetes_secret_v1.control" in str(control.get("secret_env_from")),
                   "control: its secret settings from the Secret")

    def secrets(self):
        for module, where in ((self.root, ""), (self.workload, "workload: ")):
            for name, variable in module.variables().items():
                if SECRET_NAME.search(name):
                    self.check(variable.get("sensitive") is True, f"{where}var.{name}: sensitive")
                    self.check(variable.get("default") is None, f"{where}var.{name}: no default (no secret in the code)")
            for text in strings(module.m):
                self.check(not re.search(r"[a-z]+://[^/\s:@]+:[^/\s@$]+@", text),
                           f"{where}a URL with a password in the code: {text[:60]}")
        for name, secret in self.root.resources("kubernetes_secret_v1").items():
            for key, value in (secret.get("data") or {}).items():
                found = re.fullmatch(r"\$\{var\.([a-z0-9_]+)\}", str(value))
                self.check(
                    bool(found) and self.root.variables().get(found.group(1), {}).get("sensitive") is True,
                    f"secret {name}: {key} comes from a sensitive variable",
                )

    def nats(self):
        charts = [r for r in self.root.resources("helm_release").values() if r.get("chart") == "nats"]
        if self.check(len(charts) == 1, "a helm_release of the nats chart"):
            release = charts[0]
            self.check(release.get("repository") == NATS_CHART, f"nats chart from {NATS_CHART}")
            version = str(self.root.resolve(release.get("version")))
            self.check(bool(re.fullmatch(r"\d+\.\d+\.\d+", version)), f"nats chart pinned: {version}")
            values = " ".join(release.get("values", []))
            self.check(re.search(r"jetstream = \{enabled = true", values) is not None, "nats: JetStream on")

    def run(self):
        self.workload_resources()
        self.calls()
        self.secrets()
        self.nats()
        return self.failures


def strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def main():
    here = pathlib.Path(__file__).resolve().parent
    module = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here / "modules/aerie-kubernetes"
    failures = Checks(module).run()
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        sys.exit(1)
    print(f"{module}: every check passed")


if __name__ == "__main__":
    main()
