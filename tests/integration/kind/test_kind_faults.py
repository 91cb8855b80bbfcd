"""Faults on the real kind cluster: real pods, a real volume, a real node that stops.

- A deploy killed (SIGKILL) while the model runner's pod starts again on its volume: a re-run
  converges, the next changes nothing, and the model the real runner pulled before is still on the
  volume: the new pod's pre-pull sidecar finds it and the registry serves no blob again. The
  re-run is made with -vvv: neither the API key nor its base64 form appears in its output.
- A worker stopped (`docker stop`): the chatbot's pods come back on the other worker; a run stops
  before any change with a message that names the node and the model runner's ReadWriteOnce volume
  stored on it, and `playbooks/diagnose.yml` reports the node NotReady; after `docker start` (and
  `python -m kindcluster rewire`) a run converges on the same claim.
The test cluster replaces a stopped node's pods after about 30 s (tools/kindcluster/cluster.py,
NODE_FAILURE_ARGS); Kubernetes' defaults, Docker Desktop's included, take about 6 min.
"""

import base64
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ai_stack_testlib import ROOT, kill_when, load_yaml, run_playbook, start_playbook
from kindlib import docker, localmodel, registry_blob_gets

RUNNER = load_yaml(ROOT / "roles/model_runner/defaults/main.yml")["model_runner_name"]
CLAIM = load_yaml(ROOT / "roles/storage/defaults/main.yml")["storage_pvc_name"]
_CHATBOT = load_yaml(ROOT / "roles/chatbot/defaults/main.yml")
CHATBOT = [_CHATBOT["chatbot_backend_name"], _CHATBOT["chatbot_frontend_name"]]
_spec = importlib.util.spec_from_file_location("cluster_filters", ROOT / "plugins" / "filter" / "cluster.py")
_CLUSTER_FILTERS = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_CLUSTER_FILTERS)
# The local cluster's model and registry (tools/kindcluster/localmodel.py), as `make deploy` uses them.
LOCAL_MODEL = json.dumps(localmodel.deploy_vars())


def kubectl(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", f"--kubeconfig={env['K8S_AUTH_KUBECONFIG']}", f"--context={env['K8S_AUTH_CONTEXT']}",
                           *args], capture_output=True, text=True, timeout=300, check=check)


def deploy(ns: str, api_key: str, env: dict, *args: str):
    return run_playbook("site.yml", "-e", f"ai_stack_namespace={ns}", "-e", LOCAL_MODEL, *args, api_key=api_key,
                        extra_env=env, timeout=900)


def pods(env: dict, ns: str, app: str) -> list[dict]:
    out = kubectl(env, "-n", ns, "get", "pods", "-l", f"app.kubernetes.io/name={app}", "-o", "json").stdout
    return json.loads(out)["items"]


def ready(pod: dict) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def runner_pod(env: dict, ns: str) -> dict:
    running = [p for p in pods(env, ns, RUNNER) if ready(p)]
    assert len(running) == 1, [p["metadata"]["name"] for p in pods(env, ns, RUNNER)]
    return running[0]


def prepull_log(env: dict, ns: str, pod: dict) -> str:
    return kubectl(env, "-n", ns, "logs", pod["metadata"]["name"], "-c", "model-prepull").stdout


def test_deploy_killed_while_the_runner_restarts_keeps_the_volume_and_no_key_leaks(
        kube, temp_namespace, api_key, kind_env):
    ns, env = temp_namespace, kind_env
    first = deploy(ns, api_key, env)
    assert first.rc == 0, first.describe()
    claims = kube.resources.get(api_version="v1", kind="PersistentVolumeClaim")
    claim = claims.get(namespace=ns, name=CLAIM)
    before = runner_pod(env, ns)
    assert f"Model {localmodel.MODEL} is present" in prepull_log(env, ns, before)
    served = registry_blob_gets()

    # Give the next run something to do: the runner's Deployment (and so its pod) is gone; the
    # run is killed once it has made the Deployment again, while the new pod starts on the volume.
    kubectl(env, "-n", ns, "delete", "deployment", RUNNER, "--wait=true")
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")
    kill_when(start_playbook("site.yml", "-e", f"ai_stack_namespace={ns}", "-e", LOCAL_MODEL, api_key=api_key,
                             extra_env=env),
              lambda: any(d.metadata.name == RUNNER for d in deployments.get(namespace=ns).items),
              signal.SIGKILL, "the model runner's Deployment", ns)

    again = deploy(ns, api_key, env, "-vvv")
    assert again.rc == 0, again.describe()
    assert api_key not in again.output
    assert base64.b64encode(api_key.encode()).decode() not in again.output
    third = deploy(ns, api_key, env)
    assert third.rc == 0 and not third.changed, third.describe()

    after = runner_pod(env, ns)
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    log = prepull_log(env, ns, after)
    assert f"Model {localmodel.MODEL} is present" in log and "Pulling" not in log, log
    assert registry_blob_gets() == served
    assert claims.get(namespace=ns, name=CLAIM).metadata.uid == claim.metadata.uid


def wait_for(what: str, check, timeout: int = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"{what}: not within {timeout} s")


def wait_schedulable(env: dict, node: str) -> None:
    """Ready, and the node lifecycle controller has lifted its unreachable taints (NoSchedule, NoExecute):
    it does so a few seconds after Ready, and until then the cluster role rightly counts the node as not
    schedulable (a fast machine's run met that once)."""
    kubectl(env, "wait", "--for=condition=Ready", f"node/{node}", "--timeout=180s")

    def schedulable():  # the cluster role's own rule (plugins/filter/cluster.py)
        return _CLUSTER_FILTERS._is_schedulable_worker(json.loads(kubectl(env, "get", f"node/{node}", "-o", "json").stdout))
    wait_for(f"{node} schedulable again (its taints lifted)", schedulable, timeout=120)


@pytest.fixture()
def stopped_node(kind_env):
    """Stops a node on request; starts it again (and rewires its pod network) after the test."""
    stopped = []

    def stop(node: str) -> None:
        stopped.append(node)
        docker("stop", node)

    yield stop
    for node in stopped:
        docker("start", node)
        subprocess.run([sys.executable, "-m", "kindcluster", "rewire"], cwd=ROOT, check=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "tools")})
        wait_schedulable(kind_env, node)


def test_worker_stopped_chatbot_moves_and_the_runner_volume_is_named(kube, temp_namespace, api_key, kind_env,
                                                                    stopped_node):
    ns, env = temp_namespace, kind_env
    first = deploy(ns, api_key, env)
    assert first.rc == 0, first.describe()
    node = runner_pod(env, ns)["spec"]["nodeName"]
    other = [n["metadata"]["name"] for n in json.loads(kubectl(env, "get", "nodes", "-o", "json").stdout)["items"]
             if n["metadata"]["name"] != node and "node-role.kubernetes.io/control-plane" not in n["metadata"]["labels"]]
    assert len(other) == 1, other
    # Put the chatbot's pods on the runner's node first, so that stopping it moves them.
    kubectl(env, "cordon", other[0])
    try:
        kubectl(env, "-n", ns, "rollout", "restart", *[f"deployment/{d}" for d in CHATBOT])
        for d in CHATBOT:
            kubectl(env, "-n", ns, "rollout", "status", f"deployment/{d}", "--timeout=180s")
    finally:
        kubectl(env, "uncordon", other[0])
    assert {p["spec"]["nodeName"] for d in CHATBOT for p in pods(env, ns, d) if ready(p)} == {node}

    stopped_node(node)

    def moved():
        ready_pods = [p for d in CHATBOT for p in pods(env, ns, d) if ready(p)]
        return {d for d in CHATBOT if any(p["metadata"]["labels"]["app.kubernetes.io/name"] == d
                                          and p["spec"]["nodeName"] == other[0] for p in ready_pods)} == set(CHATBOT)
    wait_for(f"the chatbot's pods Ready again on {other[0]}", moved)

    blocked = deploy(ns, api_key, env)
    assert blocked.rc != 0 and not blocked.changed, blocked.describe()
    message = blocked.failure_message()
    volume = claims_volume(kube, ns)
    assert f"Nodes not Ready: {node}" in message, message
    assert (f"The volume {volume} (ReadWriteOnce) of claim {ns}/{CLAIM} is stored on {node} only" in message), message
    # diagnose (read-only) names the node too, and exits non-zero.
    diagnosis = run_playbook("playbooks/diagnose.yml", "-e", f"ai_stack_namespace={ns}", "-e", LOCAL_MODEL,
                             "-e", "diagnose_format=json", api_key=api_key, extra_env=env, timeout=300)
    assert diagnosis.rc != 0 and not diagnosis.changed, diagnosis.describe()
    report = json.loads(next(r.msg for r in diagnosis.task_results("Diagnose | Report the findings") if not r.skipped))
    assert f"Node/{node}" in [f["object"] for f in report["findings"] if f["id"] == "node-not-ready"], report

    # Back: the node starts, its pod network is wired again, and a run converges on the same claim.
    docker("start", node)
    subprocess.run([sys.executable, "-m", "kindcluster", "rewire"], cwd=ROOT, check=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(ROOT / "tools")})
    wait_schedulable(env, node)
    back = deploy(ns, api_key, env)
    assert back.rc == 0, back.describe()
    assert runner_pod(env, ns)["spec"]["nodeName"] == node
    assert claims_volume(kube, ns) == volume


def claims_volume(kube, ns: str) -> str:
    return kube.resources.get(api_version="v1", kind="PersistentVolumeClaim").get(namespace=ns, name=CLAIM).spec.volumeName
