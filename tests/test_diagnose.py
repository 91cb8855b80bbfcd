"""Unit tests of plugins/filter/diagnose.py: one test (at least) per finding rule, on fixture objects
shaped as kubernetes.core.k8s_info returns them, and a healthy stack that gives no findings."""

import copy
import importlib.util
import json

import pytest
import yaml
from ai_stack_testlib import ROLES_DIR, ROOT

_spec = importlib.util.spec_from_file_location("diagnose_filters", ROOT / "plugins" / "filter" / "diagnose.py")
dg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dg)

NS = "ai-app"
MODEL = "ai/smollm2:360M-Q4_K_M"
RUNNER, BACKEND, FRONTEND, PVC = "docker-model-runner", "go-backend", "react-frontend", "model-storage"

# What roles/diagnose/vars/main.yml gives with the roles' defaults (test_stack_matches_the_role_vars keeps
# the two in step).
STACK = {
    "namespace": NS,
    "model": MODEL,
    "image_load_var": "chatbot_image_load_enabled",
    "model_runner": {"name": RUNNER, "mode": "cluster", "port": 12434, "container": "model-runner", "pvc": PVC,
                     "models_path": "/models", "host_address": "host.docker.internal"},
    "backend": {"name": BACKEND, "model_env": "LLM_MODEL"},
    "workloads": [
        {"name": RUNNER, "role": "model_runner", "name_var": "model_runner_name", "enabled": True, "containers": {
            "model-runner": {"resources": "model_runner_resources", "image": "model_runner_image",
                             "startup_probe": "model_runner_startup_probe", "liveness_probe": "model_runner_liveness_probe",
                             "readiness_probe": "model_runner_readiness_probe"},
            "model-prepull": {"resources": "model_runner_prepull_resources", "image": "model_runner_prepull_image"}}},
        {"name": BACKEND, "role": "chatbot", "name_var": "chatbot_backend_name", "enabled": True,
         "images_loaded_by": "chatbot_image_load_enabled", "containers": {
             "backend": {"resources": "chatbot_backend_resources", "image": "chatbot_backend_image",
                         "liveness_probe": "chatbot_liveness_probe", "readiness_probe": "chatbot_readiness_probe"}}},
        {"name": FRONTEND, "role": "chatbot", "name_var": "chatbot_frontend_name", "enabled": True,
         "images_loaded_by": "chatbot_image_load_enabled", "containers": {
             "frontend": {"resources": "chatbot_frontend_resources", "image": "chatbot_frontend_image",
                          "liveness_probe": "chatbot_liveness_probe", "readiness_probe": "chatbot_readiness_probe"}}},
    ],
    "services": [
        {"name": RUNNER, "name_var": "model_runner_name", "tag": "model_runner", "enabled": True,
         "readiness_var": "model_runner_readiness_probe"},
        {"name": BACKEND, "name_var": "chatbot_backend_name", "tag": "chatbot", "enabled": True,
         "readiness_var": "chatbot_readiness_probe"},
        {"name": FRONTEND, "name_var": "chatbot_frontend_name", "tag": "chatbot", "enabled": True,
         "readiness_var": "chatbot_readiness_probe"},
    ],
    "pvc": {"name": PVC, "enabled": True},
    "hpas": [
        {"name": "backend-hpa", "target": BACKEND, "target_var": "autoscaling_backend_deployment", "enabled": True},
        {"name": "model-runner-hpa", "target": RUNNER, "target_var": "autoscaling_model_runner_deployment",
         "enabled": False},
    ],
}


# --- fixtures: a healthy stack ---------------------------------------------------------------


def container(name, cpu="100m", memory="64Mi", limit_memory="256Mi", **extra):
    c = {"name": name, "image": f"{name}:1.0.0",
         "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": "500m", "memory": limit_memory}}}
    c.update(extra)
    return c


def runner_pod_spec():
    probe = {"httpGet": {"path": f"/models/{MODEL}", "port": "http"}, "periodSeconds": 10, "failureThreshold": 60}
    runner = container("model-runner", cpu="1000m", memory="4Gi", limit_memory="8Gi",
                       startupProbe=probe, readinessProbe=dict(probe, failureThreshold=3),
                       livenessProbe={"httpGet": {"path": "/", "port": "http"}},
                       volumeMounts=[{"name": "model-files", "mountPath": "/models"}])
    sidecar = container("model-prepull", cpu="10m", memory="16Mi", restartPolicy="Always")
    return {"containers": [runner], "initContainers": [sidecar],
            "volumes": [{"name": "model-files", "persistentVolumeClaim": {"claimName": PVC}}]}


def chatbot_pod_spec(component, model=MODEL):
    env = [{"name": "LLM_MODEL", "value": model}] if component == "backend" else []
    return {"containers": [container(component, env=env)]}


def deployment(name, pod_spec):
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}


def cstatus(name, ready=True, restarts=0, state=None, last=None, image=None):
    return {"name": name, "ready": ready, "restartCount": restarts, "image": image or f"{name}:1.0.0",
            "state": state or {"running": {"startedAt": "2026-01-01T00:00:00Z"}}, "lastState": last or {}}


def pod(name, app, spec, node="desktop-worker", phase="Running", statuses=None, init_statuses=None, conditions=None):
    spec = copy.deepcopy(spec)
    if node:
        spec["nodeName"] = node
    return {"kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"app": app}}, "spec": spec,
            "status": {"phase": phase, "conditions": conditions or [{"type": "Ready", "status": "True"}],
                       "containerStatuses": statuses if statuses is not None else
                       [cstatus(c["name"]) for c in spec["containers"]],
                       "initContainerStatuses": init_statuses if init_statuses is not None else
                       [cstatus(c["name"]) for c in spec.get("initContainers", [])]}}


def service(name, selector=None):
    return {"kind": "Service", "metadata": {"name": name}, "spec": {"selector": selector or {"app": name}}}


def slice_(service_name, ready=True, count=1):
    return {"metadata": {"name": f"{service_name}-abc", "labels": {"kubernetes.io/service-name": service_name}},
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": ready}} for _ in range(count)]}


def node(name, ready="True", cpu="4", memory="8Gi"):
    return {"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": memory},
                                                   "conditions": [{"type": "Ready", "status": ready,
                                                                   "reason": "KubeletReady", "message": "ok"}]}}


def event(kind, name, reason, message, type_="Warning", count=1, ts="2026-01-01T00:01:00Z"):
    return {"involvedObject": {"kind": kind, "name": name}, "reason": reason, "message": message, "type": type_,
            "count": count, "lastTimestamp": ts}


def hpa(name="backend-hpa", target=BACKEND, active=True, message="the HPA was able to compute the replica count"):
    return {"metadata": {"name": name}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": target}},
            "status": {"conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                                      {"type": "ScalingActive", "status": "True" if active else "False",
                                       "reason": "ValidMetricFound" if active else "FailedGetResourceMetric",
                                       "message": message}]}}


def standard_class(mode="WaitForFirstConsumer", default=True, name="standard"):
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {"metadata": {"name": name, "annotations": annotations}, "provisioner": "rancher.io/local-path",
            "volumeBindingMode": mode}


def healthy():
    return {
        "deployments": [deployment(RUNNER, runner_pod_spec()), deployment(BACKEND, chatbot_pod_spec("backend")),
                        deployment(FRONTEND, chatbot_pod_spec("frontend"))],
        "replicasets": [],
        "pods": [pod("runner-1", RUNNER, runner_pod_spec()), pod("backend-1", BACKEND, chatbot_pod_spec("backend")),
                 pod("frontend-1", FRONTEND, chatbot_pod_spec("frontend"))],
        "events": [event("Pod", "runner-1", "Unhealthy", "Startup probe failed: HTTP probe failed with statuscode: 404",
                         count=5)],
        "services": [service(RUNNER), service(BACKEND), service(FRONTEND)],
        "endpointslices": [slice_(RUNNER), slice_(BACKEND), slice_(FRONTEND)],
        "pvcs": [{"metadata": {"name": PVC}, "spec": {"storageClassName": "standard"}, "status": {"phase": "Bound"}}],
        "hpas": [hpa()],
        "storageclasses": [standard_class()],
        "nodes": [node("desktop-control-plane"), node("desktop-worker"), node("desktop-worker2")],
        "metrics_api": {"metadata": {"name": "v1beta1.metrics.k8s.io"},
                        "status": {"conditions": [{"type": "Available", "status": "True"}]}},
        "host_runner": None,
    }


def findings(state, stack=STACK):
    return dg.diagnose_findings(state, stack)


def only(state, fid, stack=STACK):
    """The one finding of the state, which must have id ``fid``."""
    found = findings(state, stack)
    assert [f["id"] for f in found] == [fid], json.dumps(found, indent=1)
    f = found[0]
    assert set(f) >= {"id", "object", "symptom", "evidence", "cause", "fix", "variable"}
    assert all(f[k] for k in ("object", "symptom", "evidence", "cause", "fix")), f
    return f


def the_pod(state, name):
    return next(p for p in state["pods"] if p["metadata"]["name"] == name)


# --- the stack's expectations are the role's ------------------------------------------------


def test_stack_matches_the_role_vars():
    """STACK above is what roles/diagnose/vars/main.yml gives with the roles' defaults: same keys, same
    variable names per container (the values of the names come from the owners' defaults)."""
    role_vars = yaml.safe_load((ROLES_DIR / "diagnose" / "vars" / "main.yml").read_text())["__diagnose_stack"]
    assert set(role_vars) == set(STACK)
    assert [w["containers"] for w in role_vars["workloads"]] == [w["containers"] for w in STACK["workloads"]]
    assert [w["name_var"] for w in role_vars["workloads"]] == [w["name_var"] for w in STACK["workloads"]]
    assert [s["readiness_var"] for s in role_vars["services"]] == [s["readiness_var"] for s in STACK["services"]]
    assert [h["target_var"] for h in role_vars["hpas"]] == [h["target_var"] for h in STACK["hpas"]]


def test_every_variable_a_finding_names_exists():
    """Each variable a finding can name is a role default (its first part, before any '.')."""
    defaults = {}
    for path in ROLES_DIR.glob("*/defaults/main.yml"):
        defaults.update(yaml.safe_load(path.read_text()) or {})
    source = (ROOT / "plugins" / "filter" / "diagnose.py").read_text()
    import re

    named = set(re.findall(r'"((?:model_runner|chatbot|storage|autoscaling|ai_stack|cluster)_[a-z_]+)', source))
    stack_vars = set(re.findall(r"\b((?:model_runner|chatbot|autoscaling)_[a-z_]+)\b", json.dumps(STACK)))
    missing = sorted(v for v in named | stack_vars if v not in defaults)
    assert not missing, missing


# --- healthy ---------------------------------------------------------------------------------


def test_healthy_stack_has_no_findings():
    assert findings(healthy()) == []
    assert dg.diagnose_table([]) == ["no findings"]


def test_unreadable_cluster_scope_is_no_finding():
    state = healthy()
    state.update(nodes=None, storageclasses=None, metrics_api=None)
    assert findings(state) == []


def test_switched_off_parts_are_not_looked_for():
    stack = copy.deepcopy(STACK)
    for w in stack["workloads"]:
        w["enabled"] = False
    for s in stack["services"]:
        s["enabled"] = False
    stack["pvc"]["enabled"] = False
    stack["hpas"][0]["enabled"] = False
    assert findings({}, stack) == []


# --- Table 5.2, row 1: CrashLoopBackOff, probes before the model is loaded ------------------------


def test_startup_probe_kills_before_the_model_is_loaded():
    state = healthy()
    p = the_pod(state, "runner-1")
    p["status"]["containerStatuses"] = [cstatus("model-runner", ready=False, restarts=4,
                                                state={"waiting": {"reason": "CrashLoopBackOff"}},
                                                last={"terminated": {"reason": "Error", "exitCode": 2}})]
    state["events"].append(event("Pod", "runner-1", "Killing",
                                 "Container model-runner failed startup probe, will be restarted", type_="Normal"))
    state["endpointslices"][0] = slice_(RUNNER, ready=False)
    found = findings(state)
    assert [f["id"] for f in found] == ["probe-kills-before-load", "service-no-ready-endpoints"]
    f = found[0]
    assert f["variable"] == "model_runner_startup_probe.failure_threshold"
    assert "failed startup probe" in f["evidence"] and "600 s" in f["cause"]
    assert found[1]["variable"] == "model_runner_readiness_probe"


def test_liveness_kills_without_startup_probe_points_at_the_startup_probe():
    state = healthy()
    spec = runner_pod_spec()
    del spec["containers"][0]["startupProbe"]
    state["deployments"][0] = deployment(RUNNER, spec)
    p = pod("runner-1", RUNNER, spec, statuses=[cstatus("model-runner", ready=False, restarts=2,
                                                        state={"waiting": {"reason": "CrashLoopBackOff"}})])
    state["pods"][0] = p
    state["events"].append(event("Pod", "runner-1", "Killing",
                                 "Container model-runner failed liveness probe, will be restarted", type_="Normal"))
    f = only(state, "liveness-kills")
    assert f["variable"] == "model_runner_startup_probe.failure_threshold" and "no startup probe" in f["cause"]


def test_liveness_kills_with_a_startup_probe_names_the_liveness_probe():
    state = healthy()
    the_pod(state, "backend-1")["status"]["containerStatuses"] = [cstatus("backend", restarts=3)]
    state["events"].append(event("Pod", "backend-1", "Killing",
                                 "Container backend failed liveness probe, will be restarted", type_="Normal"))
    f = only(state, "liveness-kills")
    assert f["variable"] == "chatbot_liveness_probe.failure_threshold"


def test_crash_loop_without_probe_or_oom():
    state = healthy()
    the_pod(state, "backend-1")["status"]["containerStatuses"] = [
        cstatus("backend", ready=False, restarts=5, state={"waiting": {"reason": "CrashLoopBackOff"}},
                last={"terminated": {"reason": "Error", "exitCode": 1, "message": "panic: LLM_URL"}})]
    state["endpointslices"][1] = slice_(BACKEND, ready=False)
    found = findings(state)
    assert [f["id"] for f in found] == ["crash-loop", "service-no-ready-endpoints"]
    assert "exit code 1" in found[0]["evidence"] and "panic: LLM_URL" in found[0]["evidence"]
    assert found[0]["variable"] == "chatbot_backend_image"


def test_a_past_restart_of_a_ready_container_is_no_finding():
    state = healthy()
    the_pod(state, "backend-1")["status"]["containerStatuses"] = [
        cstatus("backend", restarts=1, last={"terminated": {"reason": "Unknown", "exitCode": 255}})]
    assert findings(state) == []


# --- row 2: Pending, no node has the resources ----------------------------------------------------


def test_pending_for_lack_of_memory_names_the_biggest_container_and_node():
    state = healthy()
    state["pods"][0] = pod("runner-1", RUNNER, runner_pod_spec(), node=None, phase="Pending", statuses=[],
                           init_statuses=[], conditions=[{"type": "PodScheduled", "status": "False",
                                                          "reason": "Unschedulable"}])
    state["events"].append(event("Pod", "runner-1", "FailedScheduling",
                                 "0/3 nodes are available: 1 node(s) had untolerated taint, 2 Insufficient memory."))
    state["endpointslices"][0] = slice_(RUNNER, count=0)
    found = findings(state)
    assert [f["id"] for f in found] == ["pending-insufficient-resources", "service-no-ready-endpoints"]
    f = found[0]
    assert f["variable"] == "model_runner_resources.requests.memory"
    assert "Insufficient memory" in f["evidence"] and "4Gi" in f["cause"] and "8Gi allocatable" in f["cause"]


def test_pending_for_lack_of_cpu_from_the_condition_alone():
    state = healthy()
    state["pods"][1] = pod("backend-1", BACKEND, chatbot_pod_spec("backend"), node=None, phase="Pending",
                           statuses=[], conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                     "message": "0/3 nodes are available: 3 Insufficient cpu."}])
    state["endpointslices"][1] = slice_(BACKEND, count=0)
    f = findings(state)[0]
    assert f["id"] == "pending-insufficient-resources" and f["variable"] == "chatbot_backend_resources.requests.cpu"


def test_pending_for_another_reason():
    state = healthy()
    state["pods"][2] = pod("frontend-1", FRONTEND, chatbot_pod_spec("frontend"), node=None, phase="Pending",
                           statuses=[], conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                     "message": "0/3 nodes are available: 3 node(s) were unschedulable."}])
    state["endpointslices"][2] = slice_(FRONTEND, count=0)
    assert findings(state)[0]["id"] == "pending-unschedulable"


def test_several_pending_replicas_are_one_finding():
    state = healthy()
    cond = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/3 nodes are available: 3 Insufficient cpu."}]
    state["pods"] += [pod(f"backend-{i}", BACKEND, chatbot_pod_spec("backend"), node=None, phase="Pending",
                          statuses=[], conditions=cond) for i in (2, 3)]
    found = findings(state)
    assert [f["id"] for f in found] == ["pending-insufficient-resources"]
    assert found[0]["also"] == ["Pod/backend-3"]
    table = dg.diagnose_table(found)
    assert table[0].split() == ["#", "finding", "object", "variable", "to", "change"]
    assert "pending-insufficient-resources" in table[1] and "(also Pod/backend-3)" in "\n".join(table)


# --- row 3: OOMKilled ---------------------------------------------------------------------------


def test_oom_killed_names_the_memory_limit():
    state = healthy()
    the_pod(state, "runner-1")["status"]["containerStatuses"] = [
        cstatus("model-runner", restarts=1, last={"terminated": {"reason": "OOMKilled", "exitCode": 137}})]
    f = only(state, "oom-killed")
    assert f["variable"] == "model_runner_resources.limits.memory" and "8Gi" in f["cause"]
    assert "OOMKilled" in f["evidence"]


def test_oom_from_the_event_alone():
    state = healthy()
    state["events"].append(event("Pod", "backend-1", "OOMKilling",
                                 "Memory limit reached. Killing container backend."))
    f = only(state, "oom-killed")
    assert f["variable"] == "chatbot_backend_resources.limits.memory" and "Memory limit reached" in f["evidence"]


# --- row 4: Ready, but inference answers 503 ------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models", "/health", "/engines/v1/models", None])
def test_readiness_path_that_passes_before_the_model_is_there(path):
    state = healthy()
    spec = runner_pod_spec()
    if path:
        spec["containers"][0]["readinessProbe"]["httpGet"]["path"] = path
    else:
        del spec["containers"][0]["readinessProbe"]
    state["deployments"][0] = deployment(RUNNER, spec)
    f = only(state, "readiness-passes-too-early")
    assert f["variable"] == "ai_stack_model_name"
    assert (path or "no HTTP readinessProbe") in f["evidence"] and f"/models/{MODEL}" in f["cause"]


def test_backend_asking_for_another_model():
    state = healthy()
    state["deployments"][1] = deployment(BACKEND, chatbot_pod_spec("backend", model="ai/smollm2"))
    f = only(state, "model-name-mismatch")
    assert f["variable"] == "chatbot_llm_model" and "LLM_MODEL=ai/smollm2" in f["evidence"]


# --- row 5: the model is downloaded again on every restart ----------------------------------------


def test_model_volume_not_a_claim():
    state = healthy()
    spec = runner_pod_spec()
    spec["volumes"] = [{"name": "model-files", "emptyDir": {}}]
    state["deployments"][0] = deployment(RUNNER, spec)
    f = only(state, "model-not-persisted")
    assert f["variable"] == "model_runner_pvc_name" and "emptyDir" in f["evidence"]


def test_nothing_mounted_at_the_models_path():
    state = healthy()
    spec = runner_pod_spec()
    spec["containers"][0]["volumeMounts"] = []
    state["deployments"][0] = deployment(RUNNER, spec)
    f = only(state, "model-not-persisted")
    assert "nothing is mounted at /models" in f["evidence"]


def test_runner_mounting_another_claim():
    state = healthy()
    spec = runner_pod_spec()
    spec["volumes"][0]["persistentVolumeClaim"]["claimName"] = "other"
    state["deployments"][0] = deployment(RUNNER, spec)
    f = only(state, "model-not-persisted")
    assert "claim other" in f["evidence"]


# --- images ---------------------------------------------------------------------------------------


def test_image_missing_on_one_node_names_the_node():
    state = healthy()
    p = pod("backend-2", BACKEND, chatbot_pod_spec("backend"), node="desktop-worker2", phase="Pending",
            statuses=[cstatus("backend", ready=False, image="go-backend:1.0.0", state={"waiting": {
                "reason": "ErrImageNeverPull",
                "message": 'Container image "go-backend:1.0.0" is not present with pull policy of Never'}})])
    state["pods"].append(p)
    f = only(state, "image-not-on-node")
    assert "desktop-worker2" in f["symptom"] and "desktop-worker2" in f["cause"] and "desktop-worker2" in f["fix"]
    assert f["variable"] == "chatbot_image_load_enabled" and "ErrImageNeverPull" in f["evidence"]


def test_image_pull_failure_names_the_image_variable():
    state = healthy()
    the_pod(state, "runner-1")["status"]["initContainerStatuses"] = [
        cstatus("model-prepull", ready=False, state={"waiting": {"reason": "ImagePullBackOff",
                                                                 "message": "Back-off pulling image"}})]
    f = only(state, "image-pull-failed")
    assert f["variable"] == "model_runner_prepull_image"


# --- ReplicaSet and Deployment --------------------------------------------------------------------


def test_replicaset_that_cannot_create_pods():
    state = healthy()
    state["replicasets"] = [{"metadata": {"name": "go-backend-abc", "ownerReferences": [{"name": BACKEND}]},
                             "status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                                                        "reason": "FailedCreate",
                                                        "message": "pods is forbidden: exceeded quota"}]}}]
    f = only(state, "pods-not-created")
    assert "exceeded quota" in f["evidence"] and f["variable"] == "chatbot_backend_resources"


def test_deployment_missing():
    state = healthy()
    del state["deployments"][2]
    del state["pods"][2]
    del state["endpointslices"][2]
    found = findings(state)
    assert [f["id"] for f in found] == ["deployment-missing", "service-selector-matches-nothing"]
    assert found[0]["variable"] == "chatbot_frontend_name"


# --- PVC Pending ------------------------------------------------------------------------------------


def pending_claim(state, class_name=None, events=()):
    spec = {"storageClassName": class_name} if class_name else {}
    state["pvcs"] = [{"metadata": {"name": PVC}, "spec": spec, "status": {"phase": "Pending"}}]
    state["events"] += list(events)
    # The runner's pod waits for its claim.
    state["pods"][0] = pod("runner-1", RUNNER, runner_pod_spec(), node=None, phase="Pending", statuses=[],
                           init_statuses=[], conditions=[{"type": "PodScheduled", "status": "False",
                                                          "reason": "Unschedulable",
                                                          "message": "0/3 nodes are available: pod has unbound "
                                                                     "immediate PersistentVolumeClaims."}])
    state["endpointslices"][0] = slice_(RUNNER, count=0)
    return state


def test_claim_without_class_and_no_default_class():
    state = pending_claim(healthy(), events=[event(
        "PersistentVolumeClaim", PVC, "FailedBinding",
        "no persistent volumes available for this claim and no storage class is set", type_="Normal")])
    state["storageclasses"] = [standard_class(default=False)]
    ids = [f["id"] for f in findings(state)]
    assert ids == ["pending-unschedulable", "pvc-no-default-class", "service-no-ready-endpoints"]
    f = findings(state)[1]
    assert f["variable"] == "storage_class_name" and "classes here: standard" in f["cause"]
    assert "no storage class is set" in f["evidence"]


def test_claim_with_a_class_that_does_not_exist():
    state = pending_claim(healthy(), "fast-ssd", [event(
        "PersistentVolumeClaim", PVC, "ProvisioningFailed", 'storageclass.storage.k8s.io "fast-ssd" not found')])
    f = [f for f in findings(state) if f["id"].startswith("pvc")]
    assert [x["id"] for x in f] == ["pvc-class-missing"]
    assert f[0]["variable"] == "storage_class_name" and "fast-ssd" in f[0]["cause"] and "not found" in f[0]["evidence"]


def test_claim_class_missing_found_from_the_event_when_classes_are_unreadable():
    state = pending_claim(healthy(), "fast-ssd", [event(
        "PersistentVolumeClaim", PVC, "ProvisioningFailed", 'storageclass.storage.k8s.io "fast-ssd" not found')])
    state["storageclasses"] = None
    assert "pvc-class-missing" in [f["id"] for f in findings(state)]


def test_claim_waiting_for_a_consumer_that_is_not_scheduled():
    state = healthy()
    state["pvcs"] = [{"metadata": {"name": PVC}, "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}]
    state["events"].append(event("PersistentVolumeClaim", PVC, "WaitForFirstConsumer",
                                 "waiting for first consumer to be created before binding", type_="Normal"))
    # The runner's pod is Pending for lack of memory: it never becomes the consumer.
    state["pods"][0] = pod("runner-1", RUNNER, runner_pod_spec(), node=None, phase="Pending", statuses=[],
                           init_statuses=[], conditions=[{"type": "PodScheduled", "status": "False",
                                                          "reason": "Unschedulable",
                                                          "message": "0/3 nodes are available: 3 Insufficient memory."}])
    state["endpointslices"][0] = slice_(RUNNER, count=0)
    ids = [f["id"] for f in findings(state)]
    assert ids == ["pending-insufficient-resources", "pvc-waiting-for-consumer", "service-no-ready-endpoints"]
    f = findings(state)[1]
    assert "its pods are Pending" in f["cause"] and "waiting for first consumer" in f["evidence"]


def test_claim_waiting_with_no_consumer_at_all():
    state = healthy()
    state["pvcs"] = [{"metadata": {"name": PVC}, "spec": {}, "status": {"phase": "Pending"}}]
    state["pods"] = state["pods"][1:]
    state["deployments"][0]["spec"]["selector"]["matchLabels"] = {"app": RUNNER}
    state["endpointslices"][0] = slice_(RUNNER, count=0)
    found = [f for f in findings(state) if f["id"].startswith("pvc")]
    assert [f["id"] for f in found] == ["pvc-waiting-for-consumer"]
    assert found[0]["variable"] == "model_runner_mode" and "no pod uses it" in found[0]["cause"]


def test_claim_pending_with_an_immediate_class():
    state = healthy()
    state["storageclasses"] = [standard_class(mode="Immediate")]
    state["pvcs"] = [{"metadata": {"name": PVC}, "spec": {"storageClassName": "standard"}, "status": {"phase": "Pending"}}]
    assert [f["id"] for f in findings(state)] == ["pvc-pending"]


def test_claim_missing():
    state = healthy()
    state["pvcs"] = []
    f = only(state, "pvc-missing")
    assert f["variable"] == "storage_state"


# --- HPA --------------------------------------------------------------------------------------------


def test_hpa_without_metrics_api():
    state = healthy()
    state["metrics_api"] = {}
    state["hpas"] = [hpa(active=False, message="the HPA was unable to compute the replica count: unable to get "
                                               "metrics for resource cpu: no metrics returned from resource metrics API")]
    f = only(state, "hpa-no-metrics-api")
    assert f["variable"] == "autoscaling_metrics_server_enabled" and "unable to get metrics" in f["evidence"]


def test_hpa_with_metrics_api_not_available():
    state = healthy()
    state["metrics_api"]["status"]["conditions"][0].update(status="False", message="failing or missing response")
    f = only(state, "hpa-no-metrics-api")
    assert "Available=False" in f["evidence"]


def test_hpa_target_container_without_cpu_request():
    state = healthy()
    spec = chatbot_pod_spec("backend")
    del spec["containers"][0]["resources"]["requests"]["cpu"]
    state["deployments"][1] = deployment(BACKEND, spec)
    state["hpas"] = [hpa(active=False, message="failed to get cpu utilization: missing request for cpu in "
                                               "container backend of Pod go-backend-x")]
    f = only(state, "hpa-no-cpu-request")
    assert f["variable"] == "chatbot_backend_resources.requests.cpu" and "missing request for cpu" in f["evidence"]


def test_hpa_metrics_unknown_with_the_api_available():
    state = healthy()
    state["hpas"] = [hpa(active=False, message="failed to get cpu utilization: did not receive metrics")]
    f = only(state, "hpa-metrics-unknown")
    assert "did not receive metrics" in f["evidence"]


def test_hpa_missing_and_target_missing():
    state = healthy()
    state["hpas"] = []
    assert only(state, "hpa-missing")["variable"] == "autoscaling_state"
    state["hpas"] = [hpa(target="go-backnd")]
    assert only(state, "hpa-target-missing")["variable"] == "autoscaling_backend_deployment"


# --- Services -------------------------------------------------------------------------------------


def test_service_selector_matching_nothing():
    state = healthy()
    state["services"][1] = service(BACKEND, selector={"app": "go-backend-old"})
    f = only(state, "service-selector-matches-nothing")
    assert f["variable"] == "chatbot_backend_name" and "app=go-backend-old" in f["evidence"]


def test_service_without_ready_endpoints():
    state = healthy()
    state["endpointslices"][2] = slice_(FRONTEND, ready=False, count=2)
    f = only(state, "service-no-ready-endpoints")
    assert "2 endpoint(s), 0 ready" in f["evidence"] and f["variable"] == "chatbot_readiness_probe"


def test_service_missing():
    state = healthy()
    del state["services"][1]
    assert only(state, "service-missing")["variable"] == "chatbot_backend_name"


# --- nodes and host mode ----------------------------------------------------------------------------


def test_node_not_ready():
    state = healthy()
    state["nodes"][2] = node("desktop-worker2", ready="Unknown")
    state["nodes"][2]["status"]["conditions"][0].update(reason="NodeStatusUnknown",
                                                        message="Kubelet stopped posting node status.")
    f = only(state, "node-not-ready")
    assert f["object"] == "Node/desktop-worker2" and "Kubelet stopped posting" in f["evidence"]


def host_mode(reachable):
    stack = copy.deepcopy(STACK)
    stack["model_runner"]["mode"] = "host"
    stack["workloads"][0]["enabled"] = False
    stack["pvc"]["enabled"] = False
    state = healthy()
    state["deployments"], state["pods"] = state["deployments"][1:], state["pods"][1:]
    state["services"][0] = {"metadata": {"name": RUNNER}, "spec": {"type": "ExternalName",
                                                                    "externalName": "host.docker.internal"}}
    state["host_runner"] = {"url": "http://localhost:12434/", "reachable": reachable,
                            "error": "" if reachable else "Status code was -1: Connection refused"}
    return state, stack


def test_host_mode_with_the_host_runner_answering():
    state, stack = host_mode(True)
    assert findings(state, stack) == []


def test_host_mode_with_the_host_runner_unreachable():
    state, stack = host_mode(False)
    f = only(state, "host-runner-unreachable", stack)
    assert f["variable"] == "model_runner_mode" and "Connection refused" in f["evidence"]


# --- output and bundle ------------------------------------------------------------------------------


def test_table_with_notes_and_findings():
    state = healthy()
    state["services"][1] = service(BACKEND, selector={"app": "x"})
    lines = dg.diagnose_table(findings(state), ["This user may not read nodes"])
    assert lines[0] == "note: This user may not read nodes"
    text = "\n".join(lines)
    assert "service-selector-matches-nothing" in text and "evidence:" in text and "fix:" in text
    assert dg.diagnose_table([], ["n"]) == ["note: n", "no findings"]


def test_findings_are_json_serialisable():
    state = healthy()
    state["hpas"] = []
    json.dumps(findings(state))


def test_bundle_object_strips_bookkeeping_and_secret_values():
    secret = {"kind": "Secret", "metadata": {"name": "app-secrets", "managedFields": [{"manager": "x"}],
                                             "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                                             '{"data": {"ANTHROPIC_API_KEY": "c2stYW50"}}'}},
              "data": {"ANTHROPIC_API_KEY": "c2stYW50"}, "stringData": {"OTHER": "sk-ant"}}
    out = dg.diagnose_bundle_object(secret)
    assert out["data"] == {"ANTHROPIC_API_KEY": "<redacted>", "OTHER": "<redacted>"}
    assert "stringData" not in out and "managedFields" not in out["metadata"]
    assert "c2stYW50" not in json.dumps(out) and "sk-ant" not in json.dumps(out)
    assert secret["data"]["ANTHROPIC_API_KEY"] == "c2stYW50", "the input is not modified"
    dep = deployment(BACKEND, {"containers": [container("backend", env=[
        {"name": "ANTHROPIC_API_KEY", "value": "sk-ant-plain"}, {"name": "PORT", "value": "8080"},
        {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])]})
    dep["metadata"]["managedFields"] = [{"manager": "ai-stack"}]
    out = dg.diagnose_bundle_object(dep)
    text = json.dumps(out)
    assert "sk-ant-plain" not in text and '"8080"' in text and "secretKeyRef" in text
    assert "managedFields" not in out["metadata"]


def test_log_targets_include_previous_only_after_a_restart():
    state = healthy()
    the_pod(state, "runner-1")["status"]["containerStatuses"] = [cstatus("model-runner", restarts=2)]
    targets = dg.diagnose_log_targets(state["pods"])
    files = [t["file"] for t in targets]
    assert files == ["runner-1_model-prepull.log", "runner-1_model-runner.log", "runner-1_model-runner.previous.log",
                     "backend-1_backend.log", "frontend-1_frontend.log"]
    assert [t["previous"] for t in targets if t["file"].endswith(".previous.log")] == [True]


def test_node_conditions():
    rows = dg.diagnose_node_conditions([node("w1", ready="False")])
    assert rows[0]["name"] == "w1" and rows[0]["conditions"][0]["status"] == "False"
    assert rows[0]["allocatable"]["memory"] == "8Gi"


def test_log_text_of_a_log_and_of_a_container_without_one():
    assert dg.diagnose_log_text({"log_lines": ["a", "b"], "log": "a\nb"}) == "a\nb\n"
    failed = {"failed": True, "msg": 'Unable to retrieve log from Pod due to: 400\nReason: Bad Request\nHTTP response '
              'body: {"kind":"Status","message":"no logs found for container \\"backend\\" in pod \\"ns/p\\"",'
              '"reason":"BadRequest","code":400}'}
    assert dg.diagnose_log_text(failed) == 'no log: no logs found for container \\"backend\\" in pod \\"ns/p\\"\n'
    assert dg.diagnose_log_text({"failed": True, "msg": "boom\nmore"}) == "no log: boom\n"


# --- bad input stops before the cluster is asked anything -------------------------------------------


@pytest.mark.parametrize("args,words", [
    (("-e", "diagnose_format=xml"), ["diagnose_format", "xml"]),
    (("-e", "diagnose_log_lines=0"), ["diagnose_log_lines"]),
    (("-e", "diagnose_bundle=/nonexistent/dir"), ["diagnose_bundle", "/nonexistent/dir"]),
    (("-e", "diagnose_output_file=/nonexistent/dir/r.json"), ["diagnose_output_file"]),
])
def test_bad_input_stops_with_one_line_naming_the_variable(args, words, tmp_path):
    from ai_stack_testlib import run_playbook

    # A kubeconfig that does not exist: the run must stop on the input before it talks to any cluster.
    env = {"K8S_AUTH_KUBECONFIG": str(tmp_path / "none"), "K8S_AUTH_CONTEXT": "none"}
    run = run_playbook("playbooks/diagnose.yml", *args, api_key="x", extra_env=env, timeout=300)
    assert run.rc != 0, run.describe()
    message = run.failure_message()
    assert all(w in message for w in words) and "\n" not in message.strip(), message
    assert not [r for r in run.results() if r.action.startswith("kubernetes.core")], run.describe()
