"""playbooks/diagnose.yml on real containers (kind): failures that only real pods show, each injected
through the project's own variables, named by diagnose with the variable to change, then fixed the
same way, after which diagnose reports no findings.

- A memory limit below what the real Docker Model Runner needs once it loads the model for a chat:
  the kernel really OOM-kills it.
- A startup probe that gives up before the model is there: the kubelet really kills the runner
  (here the model never arrives, because the name is not in the local registry, so any budget is
  too short) and it crash-loops.
- The chatbot's image removed from the nodes (crictl rmi, pull policy Never): the new pod really
  fails with ErrImageNeverPull on a named node; the chatbot role loads the image again.
The simulated cluster's diagnose tests (tests/integration/test_diagnose.py) cover what the control
plane alone shows.
"""

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

from ai_stack_testlib import ROOT, load_yaml, new_api_key, run_playbook

sys.path.insert(0, str(ROOT / "tools"))
from kindcluster import localmodel  # noqa: E402
from kindcluster.common import NODE_NAMES  # noqa: E402

_RUNNER = load_yaml(ROOT / "roles/model_runner/defaults/main.yml")
RUNNER, RUNNER_PORT = _RUNNER["model_runner_name"], _RUNNER["model_runner_port"]
_CHATBOT = load_yaml(ROOT / "roles/chatbot/defaults/main.yml")
BACKEND, BACKEND_IMAGE = _CHATBOT["chatbot_backend_name"], _CHATBOT["chatbot_backend_image"]
LOCAL_MODEL = json.dumps(localmodel.deploy_vars())
REPORT_TASK = "Diagnose | Report the findings"


def deploy(ns, key, env, *args):
    return run_playbook("site.yml", "-e", f"ai_stack_namespace={ns}", "-e", LOCAL_MODEL, *args, api_key=key,
                        extra_env=env, timeout=900)


def diagnose(ns, env):
    run = run_playbook("playbooks/diagnose.yml", "-e", f"ai_stack_namespace={ns}", "-e", LOCAL_MODEL,
                       "-e", "diagnose_format=json", api_key="sk-ant-unused", extra_env=env, timeout=600)
    reports = [r for r in run.task_results(REPORT_TASK) if not r.skipped]
    assert reports, run.describe()
    return run, json.loads(reports[0].msg)


def kubectl(env, *args):
    return subprocess.run(["kubectl", f"--kubeconfig={env['K8S_AUTH_KUBECONFIG']}", f"--context={env['K8S_AUTH_CONTEXT']}",
                           *args], capture_output=True, text=True, timeout=120, check=True).stdout


def pods(env, ns, app):
    return json.loads(kubectl(env, "-n", ns, "get", "pods", "-l", f"app={app}", "-o", "json"))["items"]


def wait_for(what, check, timeout=240, step=3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(step)
    pytest.fail(f"timed out waiting for {what}")


def finding(report, finding_id):
    found = [f for f in report["findings"] if f["id"] == finding_id]
    assert found, report
    return found[0]


def no_findings(ns, env):
    """After a fix: no findings, within 3 min (the HPA's metrics settle after a rollout)."""
    last = {}

    def clean():
        run, report = diagnose(ns, env)
        last["report"] = report
        return run.rc == 0 and report["findings"] == []
    try:
        wait_for("no findings", clean, timeout=180, step=10)
    except pytest.fail.Exception:
        pytest.fail(f"findings remain: {last.get('report')}")


@pytest.fixture(scope="module")
def stack(kind_env):
    ns = f"ai-kdiag-{secrets.token_hex(3)}"
    key = new_api_key()
    try:
        first = deploy(ns, key, kind_env)
        assert first.rc == 0, first.describe()
        yield {"ns": ns, "key": key, "env": kind_env}
    finally:
        subprocess.run(["kubectl", f"--kubeconfig={kind_env['K8S_AUTH_KUBECONFIG']}",
                        f"--context={kind_env['K8S_AUTH_CONTEXT']}", "delete", "namespace", ns, "--wait=false"],
                       capture_output=True, timeout=120, check=False)


def terminated_reason(pod, container):
    for status in pod.get("status", {}).get("containerStatuses", []):
        if status["name"] == container:
            state = status.get("lastState", {}).get("terminated") or status.get("state", {}).get("terminated") or {}
            return state.get("reason")
    return None


def test_runner_oom_killed_then_fixed(stack):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    tight = {"model_runner_resources": {"requests": {"cpu": "100m", "memory": "8Mi"},
                                        "limits": {"cpu": "1", "memory": "8Mi"}}}
    run = deploy(ns, key, env, "-e", json.dumps(tight))
    assert run.rc == 0, run.describe()
    # The runner itself idles in about 5Mi (it starts under 8Mi; under 4Mi runc cannot even start it),
    # and answered a chat under 12Mi: at 8Mi, starting llama-server and loading the model for a chat
    # is more than the limit holds: the kernel kills the container (the kubelet sets memory.oom.group).
    backend = pods(env, ns, BACKEND)[0]["metadata"]["name"]
    chat = json.dumps({"model": localmodel.MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    subprocess.run(["kubectl", f"--kubeconfig={env['K8S_AUTH_KUBECONFIG']}", f"--context={env['K8S_AUTH_CONTEXT']}",
                    "-n", ns, "exec", backend, "--", "/app", "probe", "-t", "60",
                    f"http://{RUNNER}:{RUNNER_PORT}/engines/v1/chat/completions", chat],
                   capture_output=True, text=True, timeout=120, check=False)
    wait_for("the runner OOMKilled", lambda: any(terminated_reason(p, "model-runner") == "OOMKilled"
                                                 for p in pods(env, ns, RUNNER)), timeout=120)
    diagnosis, report = diagnose(ns, env)
    assert diagnosis.rc != 0 and not diagnosis.changed, diagnosis.describe()
    found = finding(report, "oom-killed")
    assert found["variable"] == "model_runner_resources.limits.memory", found
    assert "8Mi" in found["cause"], found

    fixed = deploy(ns, key, env)
    assert fixed.rc == 0, fixed.describe()
    no_findings(ns, env)


def test_startup_probe_kills_the_runner_then_fixed(stack):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    short = {"ai_stack_model_name": "ai/not-in-the-registry:1",
             "model_runner_startup_probe": {"period_seconds": 2, "failure_threshold": 2, "timeout_seconds": 1}}
    run = deploy(ns, key, env, "-e", json.dumps(short), "-e", "model_runner_wait=false", "-e", "chatbot_wait=false")
    assert run.rc == 0, run.describe()

    def killed():
        events = json.loads(kubectl(env, "-n", ns, "get", "events", "--field-selector", "reason=Killing", "-o", "json"))
        return any("failed startup probe" in e.get("message", "") and e["involvedObject"]["name"].startswith(RUNNER)
                   for e in events["items"])
    wait_for("the kubelet killing the runner on its startup probe", killed)
    diagnosis, report = diagnose(ns, env)
    assert diagnosis.rc != 0, diagnosis.describe()
    found = finding(report, "probe-kills-before-load")
    assert found["variable"] == "model_runner_startup_probe.failure_threshold", found
    assert "budget is periodSeconds x failureThreshold = 4 s" in found["cause"], found

    fixed = deploy(ns, key, env)
    assert fixed.rc == 0, fixed.describe()
    no_findings(ns, env)


def test_image_missing_from_the_nodes_then_fixed(stack):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    host = (ROOT / ".kindcluster" / "docker-host").read_text().strip()
    docker_env = {**os.environ, "DOCKER_HOST": host}
    for node in NODE_NAMES[1:]:
        subprocess.run(["docker", "exec", node, "crictl", "rmi", f"docker.io/library/{BACKEND_IMAGE}"],
                       env=docker_env, capture_output=True, timeout=60, check=False)
    before = {p["metadata"]["name"] for p in pods(env, ns, BACKEND)}
    kubectl(env, "-n", ns, "delete", "pods", "-l", f"app={BACKEND}", "--wait=false")

    def never_pull():
        for pod in pods(env, ns, BACKEND):
            for status in pod.get("status", {}).get("containerStatuses", []):
                if pod["metadata"]["name"] not in before and \
                        status.get("state", {}).get("waiting", {}).get("reason") == "ErrImageNeverPull":
                    return pod["spec"]["nodeName"]
        return None
    node = wait_for("ErrImageNeverPull", never_pull, timeout=120)
    diagnosis, report = diagnose(ns, env)
    assert diagnosis.rc != 0, diagnosis.describe()
    found = finding(report, "image-not-on-node")
    assert node in found["cause"] and found["variable"] == "chatbot_image_load_enabled", found

    fixed = deploy(ns, key, env, "--tags", "chatbot")
    assert fixed.rc == 0, fixed.describe()
    no_findings(ns, env)
