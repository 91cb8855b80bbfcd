"""playbooks/diagnose.yml against a deployed stack: no findings when healthy, the right finding (with the
variable to change) for each injected failure, and "no findings" again once the failure is fixed.

SIMULATION: the simulated cluster (real kube-apiserver, controllers, scheduler and metrics-server; KWOK
plays the nodes and the pods, whose containers never run). So what is asserted here is what the
control plane really does: the scheduler's FailedScheduling for a request no node can hold (the
simulated nodes' allocatable is whatever the cluster says, so Pending for lack of capacity can only be
shown here), the PV controller with a StorageClass that does not exist, a Service whose selector
matches no pod (EndpointSlices from the real controller), the real HPA controller's "missing request
for cpu", RBAC for a user who may only view the namespace. What needs real containers (a startup
probe that really kills a slow model runner, a real OOM kill, an image missing from one node) is
covered by the unit tests' fixtures (tests/test_diagnose.py), not here. Containers on simulated nodes
have no logs: the bundle's log files say so.

Every assertion reads the JSON report (diagnose_format=json) and the exit code, not the recap text.
"""

import base64
import json
import secrets
import subprocess
import tarfile
import time

import pytest
import yaml
from ai_stack_testlib import cluster_env, new_api_key, run_playbook

NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")
REPORT_TASK = "Diagnose | Report the findings"


def diagnose(ns, *args, api_key="sk-ant-unused", env=None, timeout=600):
    """Run playbooks/diagnose.yml with diagnose_format=json; returns (run, report dict or None)."""
    run = run_playbook("playbooks/diagnose.yml", "-e", f"ai_stack_namespace={ns}", "-e", "diagnose_format=json",
                       *args, api_key=api_key, extra_env=env or cluster_env(), timeout=timeout)
    reports = [r for r in run.task_results(REPORT_TASK) if not r.skipped]
    return run, (json.loads(reports[0].msg) if reports else None)


def ids(report):
    return [f["id"] for f in report["findings"]]


def wait_for(what, check, timeout=180, step=3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(step)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def stack(kube):
    """The whole stack deployed (site.yml) in a namespace of this module's own; deleted afterwards."""
    ns = f"ai-diagnose-{secrets.token_hex(3)}"
    key = new_api_key()
    run = run_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}", api_key=key,
                       extra_env=cluster_env(), timeout=900)
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    try:
        assert run.rc == 0, run.describe()
        yield {"namespace": ns, "api_key": key}
    finally:
        namespaces.delete(name=ns)


def hpa_has_metrics(kube, ns, name="backend-hpa"):
    hpa = kube.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler").get(namespace=ns, name=name)
    conditions = {c.type: c.status for c in (hpa.status.conditions or [])}
    return conditions.get("ScalingActive") == "True" and bool(hpa.status.currentMetrics)


def healthy(kube, ns):
    """Wait until the stack is healthy as the control plane sees it (the HPA's first metrics take a minute)."""
    wait_for("the HPA's first CPU metrics", lambda: hpa_has_metrics(kube, ns), timeout=240)


def versions(kube, ns):
    """The objects of the namespace the diagnosis reads, each with its resourceVersion (its generation for
    the kinds whose status a controller keeps rewriting: the HPA's every 15 s) and the field managers."""
    out = {}
    for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "PersistentVolumeClaim"),
                              ("autoscaling/v2", "HorizontalPodAutoscaler"), ("v1", "ConfigMap"), ("v1", "Pod")):
        for obj in kube.resources.get(api_version=api_version, kind=kind).get(namespace=ns).items:
            version = obj.metadata.generation if kind in ("Deployment", "HorizontalPodAutoscaler") \
                else obj.metadata.resourceVersion
            managers = sorted({m.manager for m in obj.metadata.managedFields or []})
            out[f"{kind}/{obj.metadata.name}"] = (version, managers)
    return out


def test_healthy_stack_has_no_findings_and_nothing_changes(kube, stack, tmp_path):
    ns = stack["namespace"]
    healthy(kube, ns)
    before = versions(kube, ns)
    out = tmp_path / "report.json"
    run, report = diagnose(ns, "-e", f"diagnose_output_file={out}")
    assert run.rc == 0, run.describe()
    assert report == {"namespace": ns, "findings": [], "notes": []}, report
    assert json.loads(out.read_text()) == report
    assert run.stats["localhost"]["changed"] == 1, run.describe()  # the report file, nothing on the cluster

    checked, report = diagnose(ns, "--check")
    assert checked.rc == 0 and report["findings"] == [], checked.describe()
    assert not checked.changed, checked.describe()
    assert versions(kube, ns) == before, "diagnose changed an object"

    table = run_playbook("playbooks/diagnose.yml", "-e", f"ai_stack_namespace={ns}", api_key="x",
                         extra_env=cluster_env(), timeout=600)
    assert table.rc == 0 and table.task_results(REPORT_TASK)[0].result["msg"] == ["no findings"], table.describe()


def test_bad_format_stops_with_one_line_naming_the_variable(stack):
    run, report = diagnose(stack["namespace"], "-e", "diagnose_format=xml")
    assert run.rc != 0 and report is None, run.describe()
    message = run.failure_message()
    assert "diagnose_format" in message and "xml" in message and "\n" not in message.strip(), message


def test_bundle_holds_objects_events_logs_and_findings_but_no_secret(kube, stack, tmp_path):
    ns, key = stack["namespace"], stack["api_key"]
    # The key is in the cluster, in the Secret the backend reads.
    secret = kube.resources.get(api_version="v1", kind="Secret").get(namespace=ns, name="app-secrets")
    assert base64.b64decode(secret.data["ANTHROPIC_API_KEY"]).decode() == key
    run, report = diagnose(ns, "-e", f"diagnose_bundle={tmp_path}", "--check")
    assert run.rc == 0, run.describe()
    archives = list(tmp_path.glob(f"diagnose-{ns}-*.tar.gz"))
    assert len(archives) == 1, list(tmp_path.iterdir())
    extracted = tmp_path / "x"
    with tarfile.open(archives[0]) as tar:
        tar.extractall(extracted, filter="data")
    (root,) = list(extracted.iterdir())
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert {"deployments.yaml", "pods.yaml", "events.yaml", "services.yaml", "endpointslices.yaml", "pvcs.yaml",
            "hpas.yaml", "replicasets.yaml", "nodes.yaml", "findings.json", "findings.txt"} <= names, names
    pods = yaml.safe_load((root / "pods.yaml").read_text())
    logs = {n for n in names if n.startswith("logs/")}
    containers = {f"logs/{p['metadata']['name']}_{c['name']}.log" for p in pods
                  for c in p["spec"]["containers"] + p["spec"].get("initContainers", [])}
    assert containers and containers <= logs, (containers, logs)
    # SIMULATION: no container runs, so no log: the file says why, in one line.
    assert all((root / n).read_text().startswith("no log: ") for n in containers)
    assert json.loads((root / "findings.json").read_text())["findings"] == []
    nodes = yaml.safe_load((root / "nodes.yaml").read_text())
    assert {n["name"] for n in nodes} >= {"desktop-worker", "desktop-worker2"}
    assert all(n["conditions"] for n in nodes)
    deployments = yaml.safe_load((root / "deployments.yaml").read_text())
    assert {d["metadata"]["name"] for d in deployments} == {"docker-model-runner", "go-backend", "react-frontend"}
    assert all("managedFields" not in d["metadata"] for d in deployments)
    # No value of the key anywhere: plain, base64, or base64 of its base64.
    text = b"".join((root / n).read_bytes() for n in names)
    b64 = base64.b64encode(key.encode())
    for needle in (key.encode(), b64, base64.b64encode(b64), key[-16:].encode()):
        assert needle not in text, f"the bundle holds {needle!r}"
    assert b"ANTHROPIC_API_KEY" in text  # named (the backend's secretKeyRef), never its value
    # Found the same way in the archive's raw bytes (nothing hidden by the extraction).
    raw = subprocess.run(["zcat", str(archives[0])], capture_output=True, check=True).stdout
    assert key.encode() not in raw and b64 not in raw


def test_service_selector_matching_nothing_then_fixed(kube, stack):
    ns = stack["namespace"]
    services = kube.resources.get(api_version="v1", kind="Service")
    services.patch(namespace=ns, name="go-backend", body={"spec": {"selector": {"app": "go-backend-v0"}}},
                   content_type="application/merge-patch+json")
    run, report = diagnose(ns)
    assert run.rc != 0 and ids(report) == ["service-selector-matches-nothing"], (report, run.describe())
    finding = report["findings"][0]
    assert finding["object"] == "Service/go-backend" and finding["variable"] == "chatbot_backend_name"
    assert "app=go-backend-v0" in finding["evidence"]
    assert run.failure_message().startswith("1 finding(s) in namespace"), run.describe()

    fix = run_playbook("site.yml", "--tags", "chatbot", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}",
                       api_key=stack["api_key"], extra_env=cluster_env(), timeout=600)
    assert fix.rc == 0, fix.describe()
    run, report = diagnose(ns)
    assert run.rc == 0 and report["findings"] == [], report


def test_pending_for_lack_of_capacity_then_fixed(kube, stack):
    """SIMULATION: the simulated workers' allocatable memory is far below 200Gi; the scheduler is real."""
    ns = stack["namespace"]
    # The capacity preflight would refuse this before any change: switch it off to make the failure. As JSON:
    # the role tests model_runner_wait without `| bool`, so `-e model_runner_wait=false` (a string) would wait.
    huge = {"model_runner_resources": {"requests": {"cpu": "1000m", "memory": "200Gi"},
                                       "limits": {"cpu": "4000m", "memory": "200Gi"}},
            "cluster_capacity_check_enabled": False, "model_runner_wait": False}
    run = run_playbook("site.yml", "--tags", "model_runner", "-e", json.dumps(huge), "-e", f"ai_stack_namespace={ns}",
                       api_key=stack["api_key"], extra_env=cluster_env(), timeout=600)
    assert run.rc == 0, run.describe()
    pods = kube.resources.get(api_version="v1", kind="Pod")

    def pending():
        return any(p.status.phase == "Pending" and not p.spec.nodeName
                   and p.metadata.labels.get("app") == "docker-model-runner" for p in pods.get(namespace=ns).items)

    wait_for("a Pending model-runner pod", pending, timeout=120)
    run, report = diagnose(ns)
    assert run.rc != 0, run.describe()
    found = {f["id"]: f for f in report["findings"]}
    assert "pending-insufficient-resources" in found, report
    f = found["pending-insufficient-resources"]
    assert f["variable"] == "model_runner_resources.requests.memory", f
    assert "Insufficient memory" in f["evidence"] and "200Gi" in f["cause"] and "allocatable" in f["cause"], f
    # Nothing serves the runner's Service: said too, with the pods' finding as the cause.
    assert set(found) <= {"pending-insufficient-resources", "service-no-ready-endpoints"}, report

    fix = run_playbook("site.yml", "--tags", "model_runner", "-e", f"ai_stack_namespace={ns}",
                       api_key=stack["api_key"], extra_env=cluster_env(), timeout=900)
    assert fix.rc == 0, fix.describe()
    run, report = diagnose(ns)
    assert run.rc == 0 and report["findings"] == [], report


def test_hpa_target_without_cpu_request_then_fixed(kube, stack):
    ns = stack["namespace"]
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.patch(namespace=ns, name="go-backend", content_type="application/json-patch+json",
                      body=[{"op": "remove", "path": "/spec/template/spec/containers/0/resources/requests/cpu"}])

    def says_missing_request():
        hpa = kube.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler").get(
            namespace=ns, name="backend-hpa")
        return any(c.type == "ScalingActive" and c.status == "False" and "missing request for cpu" in (c.message or "")
                   for c in hpa.status.conditions or [])

    # The HPA controller says so once it has seen the new pod; the Deployment's spec says so at once, and
    # the rule reads both (the evidence quotes the controller's condition when it is there).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not says_missing_request():
        time.sleep(3)
    run, report = diagnose(ns)
    assert run.rc != 0, run.describe()
    found = {f["id"]: f for f in report["findings"]}
    assert "hpa-no-cpu-request" in found, report
    f = found["hpa-no-cpu-request"]
    assert f["variable"] == "chatbot_backend_resources.requests.cpu", f
    # The controller's condition may come between the wait above and the diagnosis: either source is right.
    assert "missing request for cpu" in f["evidence"] or "has no resources.requests.cpu" in f["evidence"], f

    fix = run_playbook("site.yml", "--tags", "chatbot", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}",
                       api_key=stack["api_key"], extra_env=cluster_env(), timeout=600)
    assert fix.rc == 0, fix.describe()
    healthy(kube, ns)
    # The rollout and the HPA's next metrics settle on their own schedule: no findings within 3 min.
    deadline = time.monotonic() + 180
    run, report = diagnose(ns)
    while report["findings"] and time.monotonic() < deadline:
        time.sleep(10)
        run, report = diagnose(ns)
    assert run.rc == 0 and report["findings"] == [], report


def view_only_kubeconfig(tmp_path, kube, ns) -> dict:
    """A kubeconfig with the token of a ServiceAccount bound to the built-in ClusterRole view in ns only."""
    from kubernetes import client

    core = client.CoreV1Api(kube.client)
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    client.RbacAuthorizationV1Api(kube.client).create_namespaced_role_binding(ns, {
        "metadata": {"name": "reader-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}]})
    token = core.create_namespaced_service_account_token(
        "reader", ns, {"spec": {"audiences": [], "expirationSeconds": 3600}}).status.token
    env = cluster_env()
    sim = yaml.safe_load(open(env["K8S_AUTH_KUBECONFIG"]).read())
    cluster = next(c for c in sim["clusters"] if c["name"] == sim["contexts"][0]["context"]["cluster"])
    path = tmp_path / "reader.kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "reader",
        "clusters": [{"name": "sim", "cluster": cluster["cluster"]}],
        "users": [{"name": "reader", "user": {"token": token}}],
        "contexts": [{"name": "reader", "context": {"cluster": "sim", "user": "reader", "namespace": ns}}]}))
    path.chmod(0o600)
    return {"K8S_AUTH_KUBECONFIG": str(path), "K8S_AUTH_CONTEXT": "reader", "KUBECONFIG": str(path)}


def test_read_access_to_the_namespace_is_enough(kube, stack, tmp_path):
    """Real RBAC: the built-in ClusterRole view, bound in the namespace only. Nodes, StorageClasses and
    the metrics APIService are refused: said once, their checks skipped, no finding."""
    ns = stack["namespace"]
    reader = view_only_kubeconfig(tmp_path, kube, ns)
    run, report = diagnose(ns, "-e", f"diagnose_bundle={tmp_path}", env=reader)
    assert run.rc == 0 and report["findings"] == [], (report, run.describe())
    (note,) = report["notes"]
    assert "may not read nodes, StorageClasses, the metrics APIService" in note, note
    assert list(tmp_path.glob(f"diagnose-{ns}-*.tar.gz")), list(tmp_path.iterdir())


def test_claim_with_a_class_that_does_not_exist(kube, temp_namespace):
    """A fresh namespace with only the claim, its class misspelt: the PV controller never binds it."""
    ns = temp_namespace
    run = run_playbook("site.yml", "--tags", "namespace,storage", "-e", f"ai_stack_namespace={ns}",
                       "-e", "storage_class_name=fast-ssd", api_key="x", extra_env=cluster_env(), timeout=600)
    assert run.rc == 0, run.describe()
    run, report = diagnose(ns)
    assert run.rc != 0, run.describe()
    found = {f["id"]: f for f in report["findings"]}
    assert "pvc-class-missing" in found, report
    f = found["pvc-class-missing"]
    assert f["variable"] == "storage_class_name" and "fast-ssd" in f["cause"] and "standard" in f["cause"], f
    # Nothing else was deployed here, and the diagnosis says so too.
    assert {"deployment-missing", "service-missing", "hpa-missing"} <= set(found), report
