"""Validate charts/agent-bom with real Helm (Helm v4's Go SDK through helm-python-sdk) and the
Kubernetes schemas (kubernetes-validate). Run by tests/tests/it/chart.rs; prints one JSON report
on stdout and exits non-zero on the first failure, with the reason on stderr.

For the chart's default values, every file in charts/agent-bom/examples/, and every optional
feature switched on:
  - `helm lint --strict` finds no error or warning;
  - the chart renders, for an install and for an upgrade;
  - every rendered object validates against the Kubernetes schemas of KUBE_VERSION (strict:
    no unknown fields); custom resources (ServiceMonitor) are checked by shape;
  - the command line of every container is reported, for the caller to check against the
    binary's own parser;
  - every workload (Deployment, Job) runs as non-root with a read-only root filesystem, no
    privilege escalation, every capability dropped, the RuntimeDefault seccomp profile, no
    service-account token, resource requests and a memory limit, and every long-running
    container has liveness and readiness probes;
and values that break values.schema.json are refused.
"""

import json
import sys
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

KUBE_VERSION = "1.30.0"
CHART = Path(sys.argv[1])
NAMESPACE = "agent-bom"


def fail(message):
    print(f"check_chart: FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def objects(rendered):
    out = []
    for path, text in sorted(rendered.items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                out.append((path, doc))
    return out


def check_workload(source, obj):
    kind, name = obj["kind"], obj["metadata"]["name"]
    where = f"{source}: {kind} {name}"
    pod = obj["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True or not psc.get("runAsUser"):
        fail(f"{where}: the pod does not run as a non-root user")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        fail(f"{where}: no RuntimeDefault seccomp profile")
    if pod.get("automountServiceAccountToken") is not False:
        fail(f"{where}: mounts a service-account token it does not need")
    for c in pod["containers"]:
        csc = c.get("securityContext", {})
        cwhere = f"{where} container {c['name']}"
        if csc.get("readOnlyRootFilesystem") is not True:
            fail(f"{cwhere}: the root filesystem is writable")
        if csc.get("allowPrivilegeEscalation") is not False:
            fail(f"{cwhere}: privilege escalation allowed")
        if csc.get("capabilities", {}).get("drop") != ["ALL"]:
            fail(f"{cwhere}: capabilities not all dropped")
        resources = c.get("resources", {})
        if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
            fail(f"{cwhere}: no resource requests or memory limit")
        if kind == "Deployment":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    fail(f"{cwhere}: no {probe}")


def check_service_monitor(source, obj):
    spec = obj.get("spec", {})
    if obj.get("apiVersion") != "monitoring.coreos.com/v1" or not spec.get("selector", {}).get("matchLabels"):
        fail(f"{source}: ServiceMonitor without a selector")
    for ep in spec.get("endpoints", []):
        if ep.get("path") != "/metrics" or not ep.get("port"):
            fail(f"{source}: ServiceMonitor endpoint {ep} does not scrape /metrics on a named port")


def check(values_name, values, chart):
    report = {"values": values_name}
    lint = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
    bad = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + lint.get("errors", [])
    if bad:
        fail(f"{values_name}: helm lint: {bad}")
    report["lint_messages"] = len(lint.get("messages", []))
    kinds = {}
    for mode in ("install", "upgrade"):
        rendered = chart.render(
            values,
            name="agent-bom",
            namespace=NAMESPACE,
            is_install=mode == "install",
            is_upgrade=mode == "upgrade",
        )
        for source, obj in objects(rendered):
            kind = obj.get("kind")
            kinds[kind] = kinds.get(kind, 0) + (mode == "install")
            if kind == "ServiceMonitor":
                check_service_monitor(source, obj)
                continue
            try:
                kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                fail(f"{values_name}: {source}: {kind} {obj['metadata'].get('name')}: {e.message} at {list(e.path)}")
            if kind in ("Deployment", "Job"):
                check_workload(f"{values_name}: {source}", obj)
                for c in obj["spec"]["template"]["spec"]["containers"]:
                    report.setdefault("commands", {})[c["name"]] = c.get("args", [])
    report["objects"] = kinds
    return report


def refused(chart, values, what):
    try:
        chart.render(values, name="agent-bom", namespace=NAMESPACE, is_install=True)
    except helm.HelmError as e:
        return str(e).splitlines()[0][:200]
    fail(f"values with {what} were accepted")


def validator_works():
    # The schema check must be able to fail: a Deployment with an unknown field is refused.
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replica": 1, "selector": {}, "template": {}}}
    try:
        kubernetes_validate.validate(broken, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError:
        return
    fail("kubernetes-validate accepted an invalid Deployment")


def main():
    validator_works()
    chart = helm.Chart.load(str(CHART))
    reports = [check("values.yaml", {}, chart)]
    for path in sorted((CHART / "examples").glob("*.yaml")):
        reports.append(check(f"examples/{path.name}", yaml.safe_load(path.read_text()), chart))
    # Everything optional switched on (the operations listener, Prometheus, Secure cookies):
    # rendered and validated like the examples; its command lines need the operations
    # listener's flag, which the caller does not parse.
    features = {
        "metrics": {"enabled": True, "port": 9464},
        "serviceMonitor": {"enabled": True},
        "ui": {"secureCookies": True},
        "gateway": {"enabled": True, "publicUrl": "https://mcp.example.com"},
        "api": {"ingress": {"enabled": True, "host": "agent-bom.example.com", "tlsSecret": "tls"}},
    }
    report = check("features", features, chart)
    report["binary_checked"] = False
    reports.append(report)
    refusals = {
        "unknown mode": refused(chart, {"mode": "fleet"}, "mode fleet"),
        "root user": refused(chart, {"securityContext": {"runAsUser": 0}}, "runAsUser 0"),
        "unknown key": refused(chart, {"colector": {}}, "a misspelt key"),
        "scraping without metrics": refused(
            chart, {"serviceMonitor": {"enabled": True}}, "a ServiceMonitor and no operations listener"
        ),
    }
    print(json.dumps({
        "helm_sdk": helm.helm_sdk_version(),
        "kube_version": KUBE_VERSION,
        "app_version": chart.metadata["appVersion"],
        "mode_enum": json.loads((CHART / "values.schema.json").read_text())["properties"]["mode"]["enum"],
        "reports": reports,
        "refusals": refusals,
    }))


main()
