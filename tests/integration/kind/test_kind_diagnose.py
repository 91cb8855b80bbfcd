"""playbooks/diagnose.yml on real containers (kind): failures that only real pods show, each injected
through the project's own variables (or, where the project cannot produce it, as someone would by hand),
named by diagnose with the variable to change, then fixed the project's way, after which diagnose
reports no findings. Then `--tags calibrate` times the real runner's starts.

- A memory limit below what the real Docker Model Runner needs once it loads the model for a chat:
  the kernel really OOM-kills it.
- A model whose pull outlasts the startup probe's budget: with the model gone from the claim and a
  slow link to the registry (tc on the registry's container), the kubelet really kills the runner
  mid-pull, again and again; with the default budget the same slow pull ends Ready.
- The chatbot's image removed from the nodes (crictl rmi, pull policy Never): the new pod really
  fails with ErrImageNeverPull on a named node; the chatbot role loads the image again.
- The runner as the chapter's manifest has it (Table 5.2 rows 4 and 5), patched into the Deployment
  with kubectl as a user following the chapter would: no startup probe, readiness on `/` and the
  models in an emptyDir. The pod is really Ready while its model is still downloading, and a chat
  then fails; every new pod downloads the model again. `--tags model_runner` re-creates the
  Deployment (a server-side apply cannot remove the emptyDir another manager set).
The simulated cluster's diagnose tests (tests/integration/test_diagnose.py) cover what the control
plane alone shows.
"""

import json
import re
import secrets
import subprocess
import time

import pytest
import yaml

from ai_stack_testlib import ROOT, load_yaml, new_api_key, run_playbook
from kindlib import docker, localmodel, registry_blob_gets, slow_registry
from kindcluster.common import NODE_NAMES  # noqa: E402  (kindlib puts tools/ on the path)

_RUNNER = load_yaml(ROOT / "roles/model_runner/defaults/main.yml")
RUNNER, RUNNER_PORT = _RUNNER["model_runner_name"], _RUNNER["model_runner_port"]
_CHATBOT = load_yaml(ROOT / "roles/chatbot/defaults/main.yml")
BACKEND, BACKEND_IMAGE = _CHATBOT["chatbot_backend_name"], _CHATBOT["chatbot_backend_image"]
LOCAL_MODEL = json.dumps(localmodel.deploy_vars())
REPORT_TASK = "Diagnose | Report the findings"
MODEL_PATH = f"/models/{localmodel.MODEL}"


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

    def oom_killed():
        return any(terminated_reason(p, "model-runner") == "OOMKilled" for p in pods(env, ns, RUNNER))
    # A chat, then up to 40 s for the kill; up to three chats. One run on this machine saw no kill within
    # 120 s of a single chat (its answer was not kept; the cause is not known), so the test chats again and
    # says what each chat got if the kill never comes.
    answers = []
    for _ in range(3):
        answers.append(subprocess.run(
            ["kubectl", f"--kubeconfig={env['K8S_AUTH_KUBECONFIG']}", f"--context={env['K8S_AUTH_CONTEXT']}",
             "-n", ns, "exec", backend, "--", "/app", "probe", "-t", "60",
             f"http://{RUNNER}:{RUNNER_PORT}/engines/v1/chat/completions", chat],
            capture_output=True, text=True, timeout=120, check=False).stdout.strip())
        deadline = time.monotonic() + 40
        while not oom_killed() and time.monotonic() < deadline:
            time.sleep(3)
        if oom_killed():
            break
    runner_statuses = [p.get("status", {}).get("containerStatuses") for p in pods(env, ns, RUNNER)]
    assert oom_killed(), f"not OOMKilled after {len(answers)} chat(s): {answers}; the runner's containers: {runner_statuses}"
    diagnosis, report = diagnose(ns, env)
    assert diagnosis.rc != 0 and not diagnosis.changed, diagnosis.describe()
    found = finding(report, "oom-killed")
    assert found["variable"] == "model_runner_resources.limits.memory", found
    assert "8Mi" in found["cause"], found

    fixed = deploy(ns, key, env)
    assert fixed.rc == 0, fixed.describe()
    no_findings(ns, env)


def runner_api(env, ns, method, path, body=None):
    """A request to the runner's API from the backend's pod (the real runner image has no client)."""
    backend = pods(env, ns, BACKEND)[0]["metadata"]["name"]
    return subprocess.run(["kubectl", f"--kubeconfig={env['K8S_AUTH_KUBECONFIG']}", f"--context={env['K8S_AUTH_CONTEXT']}",
                           "-n", ns, "exec", backend, "--", "/app", "probe", "-X", method, "-t", "60",
                           f"http://{RUNNER}:{RUNNER_PORT}{path}", *([body] if body else [])],
                          capture_output=True, text=True, timeout=120, check=False).stdout


def chat(env, ns):
    return runner_api(env, ns, "POST", "/engines/v1/chat/completions",
                      json.dumps({"model": localmodel.MODEL, "messages": [{"role": "user", "content": "Hi"}]}))


def prepull_log(env, ns, pod_name):
    return kubectl(env, "-n", ns, "logs", pod_name, "-c", "model-prepull")


def test_slow_model_pull_outlasts_the_startup_probe_then_fixed(stack):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    short = {"model_runner_startup_probe": {"period_seconds": 2, "failure_threshold": 2, "timeout_seconds": 1}}
    with slow_registry():
        # The model leaves the claim, so the next pod must pull it, over the slow link (about 30 s).
        deleted = runner_api(env, ns, "DELETE", f"/models/{localmodel.MODEL}?force=true")
        assert deleted.startswith("status=200 "), deleted
        run = deploy(ns, key, env, "-e", json.dumps(short), "-e", "model_runner_wait=false", "-e", "chatbot_wait=false")
        assert run.rc == 0, run.describe()

        def killed():
            events = json.loads(kubectl(env, "-n", ns, "get", "events", "--field-selector", "reason=Killing", "-o", "json"))
            return [e["involvedObject"]["name"] for e in events["items"] if "failed startup probe" in e.get("message", "")
                    and e["involvedObject"]["name"].startswith(RUNNER)]
        pod = wait_for("the kubelet killing the runner on its startup probe", killed)[0]
        # It was killed while the model was on its way: the sidecar's pull had started, and either the runner
        # reported progress ("Downloaded: ...") or the kill cut the pull's request off (curl: 52, an empty
        # reply; 18 or 56, a transfer cut). Which one depends on how far into its 4 s the pull got (on a fast
        # machine, not as far as the first progress line); the sidecar prints the cut after the kill's event.
        last = {}

        def pull_cut_by_a_kill():
            last["log"] = log = prepull_log(env, ns, pod)
            return f"Pulling {localmodel.MODEL}" in log and ("Downloaded:" in log or re.search(r"curl: \((52|18|56)\)", log))
        try:
            wait_for("the sidecar's pull, started and then cut off by the kill", pull_cut_by_a_kill, timeout=60, step=2)
        except pytest.fail.Exception:
            pytest.fail(f"the sidecar's log shows no pull cut off by the kill:\n{last.get('log')}")

        # Each new start pulls again and is killed again: a crash loop, not one unlucky start.
        def restarts():
            return [s.get("restartCount", 0) for p in pods(env, ns, RUNNER) if p["metadata"]["name"] == pod
                    for s in p.get("status", {}).get("containerStatuses", []) if s["name"] == "model-runner"]
        wait_for("the runner killed twice", lambda: max(restarts() or [0]) >= 2, timeout=180)
        diagnosis, report = diagnose(ns, env)
        assert diagnosis.rc != 0, diagnosis.describe()
        found = finding(report, "probe-kills-before-load")
        assert found["variable"] == "model_runner_startup_probe.failure_threshold", found
        assert "budget is periodSeconds x failureThreshold = 4 s" in found["cause"], found

        # The default budget (10 s x 60) holds the same slow pull: the run waits until the model is there.
        fixed = deploy(ns, key, env)
        assert fixed.rc == 0, fixed.describe()
    no_findings(ns, env)


def test_image_missing_from_the_nodes_then_fixed(stack):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    for node in NODE_NAMES[1:]:
        docker("exec", node, "crictl", "rmi", f"docker.io/library/{BACKEND_IMAGE}", check=False)
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


def ready_pods(env, ns, app, exclude=()):
    return [p for p in pods(env, ns, app) if p["metadata"]["name"] not in exclude
            and not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))]


def test_runner_as_the_chapter_has_it_is_ready_too_early_and_not_persisted_then_fixed(stack):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    live = json.loads(kubectl(env, "-n", ns, "get", "deployment", RUNNER, "-o", "json"))["spec"]["template"]["spec"]
    c = [i for i, x in enumerate(live["containers"]) if x["name"] == "model-runner"][0]
    v = [i for i, x in enumerate(live["volumes"]) if x.get("persistentVolumeClaim")][0]
    chapter = [{"op": "remove", "path": f"/spec/template/spec/containers/{c}/startupProbe"},
               {"op": "replace", "path": f"/spec/template/spec/containers/{c}/readinessProbe/httpGet/path", "value": "/"},
               {"op": "replace", "path": f"/spec/template/spec/volumes/{v}",
                "value": {"name": live["volumes"][v]["name"], "emptyDir": {}}}]
    before = {p["metadata"]["name"] for p in pods(env, ns, RUNNER)}
    with slow_registry():
        served = registry_blob_gets()
        kubectl(env, "-n", ns, "patch", "deployment", RUNNER, "--type=json", "-p", json.dumps(chapter))
        # Row 4: Ready (GET / answers as soon as the server runs) while the model is still downloading.
        pod = wait_for("a runner pod Ready on GET /", lambda: ready_pods(env, ns, RUNNER, before), timeout=120,
                       step=1)[0]["metadata"]["name"]
        answer = chat(env, ns)
        log = prepull_log(env, ns, pod)
        assert answer.startswith("status=404 ") and "model not found" in answer, answer
        assert "is present" not in log, log
        diagnosis, report = diagnose(ns, env)
        assert diagnosis.rc != 0, diagnosis.describe()
        early = finding(report, "readiness-passes-too-early")
        assert early["variable"] == "ai_stack_model_name" and "readinessProbe.httpGet.path: /" in early["evidence"], early
        kept = finding(report, "model-not-persisted")
        assert kept["variable"] == "model_runner_pvc_name" and "emptyDir" in kept["evidence"], kept

        # Row 5: once the model is there, a new pod downloads it again (the registry serves its blobs again).
        wait_for("the model downloaded", lambda: "is present" in prepull_log(env, ns, pod), timeout=180)
        downloaded = wait_for("the registry's log of that download", lambda: max(registry_blob_gets() - served, 0),
                              timeout=30) + served
        kubectl(env, "-n", ns, "delete", "pod", pod, "--wait=false")
        wait_for("the next pod downloading the model again", lambda: registry_blob_gets() > downloaded, timeout=180)

    # The project's Deployment again: the apply is refused (an emptyDir and the claim on one volume), so the
    # role re-creates it; the model is on the claim, so the run ends Ready at once.
    fixed = deploy(ns, key, env, "--tags", "model_runner")
    assert fixed.rc == 0, fixed.describe()
    recreated = fixed.task_results("deployment | Delete the model runner Deployment and its pods (at most 120 s)")
    assert recreated and recreated[0].changed, fixed.describe()
    again = deploy(ns, key, env, "--tags", "model_runner")
    assert again.rc == 0 and not again.changed, again.describe()
    no_findings(ns, env)


def test_calibrate_times_the_real_runners_starts(stack, tmp_path):
    ns, key, env = stack["ns"], stack["key"], stack["env"]
    run = run_playbook("site.yml", "--tags", "calibrate", "-e", f"ai_stack_namespace={ns}", "-e", LOCAL_MODEL,
                       "-e", "tuning_calibrate_restarts=2", "-e", f"ai_stack_report_dir={tmp_path}", api_key=key,
                       extra_env=env, timeout=900)
    assert run.rc == 0, run.describe()
    text = (tmp_path / f"calibrate-{ns}.yml").read_text()
    values = yaml.safe_load(text)
    starts = re.findall(r"^# (docker-model-runner-\S+): created (\S+), container started (\S+), Ready (\S+): "
                        r"load time (\d+) s", text.replace("\n#   ", " "), re.M)
    assert len(starts) == 2, text
    # The last start is the pod that runs now, timed from its own status.
    now = ready_pods(env, ns, RUNNER)
    assert len(now) == 1 and starts[-1][0] == now[0]["metadata"]["name"], (starts, now)
    status = now[0]["status"]
    started = [c["state"]["running"]["startedAt"] for c in status["containerStatuses"] if c["name"] == "model-runner"][0]
    ready = [c["lastTransitionTime"] for c in status["conditions"] if c["type"] == "Ready"][0]
    assert starts[-1][2:4] == (started, ready), (starts[-1], status)
    # The recommended startup budget holds the worst measured start plus the buffer (at least 30 s).
    probe = values["model_runner_startup_probe"]
    worst = max(int(s[4]) for s in starts)
    assert probe["period_seconds"] * probe["failure_threshold"] >= worst + 30, (probe, starts)
