"""`site.yml --tags calibrate` and `--tags rightsize` against a deployed stack: the recommended vars files hold
what the cluster shows.

SIMULATION: the simulated cluster (real kube-apiserver, controllers, scheduler and metrics-server; KWOK plays the
nodes and pods, whose containers never run). What is real: the rollout restarts (new ReplicaSets and pods made by
the Deployment controller, scheduled by the scheduler), the pods' creationTimestamp, the metrics API
(metrics.k8s.io served by a real metrics-server through the aggregation layer) and the HPA. What KWOK plays:
- a start's duration: KWOK marks a pod Ready after its `pod-ready.stage.kwok.x-k8s.io/delay` annotation (3 s
  here, through model_runner_pod_annotations) and writes the container's startedAt and the Ready condition in the
  same status update, so "container start to Ready" (the load time the startup probe must allow) is 0 s here and
  the 3 s show up between the pod's creation and Ready. A real runner's load time and a restart the startup
  probe caused are covered by the unit tests' fixtures (tests/test_tuning.py);
- the usage: metrics-server scrapes KWOK, which reports the `kwok.x-k8s.io/usage-cpu` / `-memory` annotations for
  every container of the pod (the runner's pre-pull sidecar is not reported at all).
Every assertion compares the files with objects read from the API server, not with the run's output text. The
last test runs the load test (`--tags loadtest`) on the same stack and checks its report and chart.
"""

import json
import math
import re
import secrets
import time

import pytest
import yaml
from ai_stack_testlib import cluster_env, new_api_key, run_playbook

RUNNER_USAGE = {"kwok.x-k8s.io/usage-cpu": "1500m", "kwok.x-k8s.io/usage-memory": "3Gi"}
CHATBOT_USAGE = {"kwok.x-k8s.io/usage-cpu": "40m", "kwok.x-k8s.io/usage-memory": "30Mi"}
MARKER = "# Recommended by ai-stack (roles/tuning):"


def settings(ns, report_dir):
    return json.dumps({
        "ai_stack_namespace": ns, "ai_stack_report_dir": str(report_dir), "chatbot_image_load_enabled": False,
        "model_runner_pod_annotations": {"pod-ready.stage.kwok.x-k8s.io/delay": "3s", **RUNNER_USAGE},
        "chatbot_pod_annotations": CHATBOT_USAGE,
    })


@pytest.fixture(scope="module")
def stack(kube, tmp_path_factory):
    """The stack deployed (site.yml) with simulated start delay and usage, in a namespace of its own."""
    ns = f"ai-tuning-{secrets.token_hex(3)}"
    reports = tmp_path_factory.mktemp("reports")
    key = new_api_key()
    run = run_playbook("site.yml", "-e", settings(ns, reports), api_key=key, extra_env=cluster_env(), timeout=900)
    try:
        assert run.rc == 0, run.describe()
        yield {"namespace": ns, "reports": reports, "api_key": key}
    finally:
        kube.resources.get(api_version="v1", kind="Namespace").delete(name=ns)


def tuning(stack, tag, *args):
    return run_playbook("site.yml", "--tags", tag, "-e", settings(stack["namespace"], stack["reports"]), *args,
                        api_key=stack["api_key"], extra_env=cluster_env(), timeout=900)


def read_vars_file(path):
    text = path.read_text()
    assert text.startswith(MARKER + "\n"), text[:200]
    return text, yaml.safe_load(text)


def runner(kube, ns):
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")
    return deployments.get(namespace=ns, name="docker-model-runner")


def test_calibrate_times_each_restart_from_the_pods_timestamps(kube, stack):
    ns = stack["namespace"]
    pods = kube.resources.get(api_version="v1", kind="Pod")
    before = {p.metadata.uid for p in pods.get(namespace=ns, label_selector="app=docker-model-runner").items}
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")
    chatbot_before = {n: deployments.get(namespace=ns, name=n).metadata.generation for n in ("go-backend", "react-frontend")}
    replicasets_before = {r.metadata.name for r in kube.resources.get(api_version="apps/v1", kind="ReplicaSet").get(
        namespace=ns).items if r.metadata.name.startswith("docker-model-runner-")}
    assert before, "no model runner pod"

    run = tuning(stack, "calibrate", "-e", "tuning_calibrate_restarts=2")
    assert run.rc == 0, run.describe()

    # Two real rollouts: the Deployment controller made two new ReplicaSets, and none of the old pods is left.
    deployment = runner(kube, ns)
    annotation = deployment.spec.template.metadata.annotations["ai-stack/calibrate-restart"]
    assert annotation.endswith(" 2/2"), annotation
    replicasets = {r.metadata.name for r in kube.resources.get(api_version="apps/v1", kind="ReplicaSet").get(
        namespace=ns).items if r.metadata.name.startswith("docker-model-runner-")}
    assert len(replicasets - replicasets_before) == 2, (replicasets, replicasets_before)
    now = [p for p in pods.get(namespace=ns, label_selector="app=docker-model-runner").items
           if not p.metadata.deletionTimestamp]
    assert len(now) == 1 and now[0].metadata.uid not in before, [p.metadata.name for p in now]

    text, values = read_vars_file(stack["reports"] / f"calibrate-{ns}.yml")
    unwrapped = text.replace("\n#   ", " ")  # long comment lines are wrapped, continued with "#   "
    starts = re.findall(r"^# (docker-model-runner-\S+): created (\S+), container started (\S+), Ready (\S+): "
                        r"load time (\d+) s \(from the container's start\), (\d+) s from the pod's creation$", unwrapped, re.M)
    assert len(starts) == 2, text
    # The last start is the pod that runs now: the file quotes its own timestamps.
    pod = now[0]
    ready = [c.lastTransitionTime for c in pod.status.conditions if c.type == "Ready" and c.status == "True"][0]
    started = [c.state.running.startedAt for c in pod.status.containerStatuses if c.name == "model-runner"][0]
    assert starts[-1][:4] == (pod.metadata.name, pod.metadata.creationTimestamp, started, ready), (starts, pod.status)
    # SIMULATION: KWOK writes startedAt and Ready together (0 s) after the 3 s ready delay (from the pod's creation).
    loads = [int(s[4]) for s in starts]
    assert loads == [0, 0] and all(int(s[5]) >= 3 for s in starts), starts
    # worst 0 s + the 30 s minimum buffer -> 3 periods of the kept 10 s; readiness kept.
    assert values == {"model_runner_startup_probe": {"period_seconds": 10, "failure_threshold": 3, "timeout_seconds": 5},
                      "model_runner_readiness_probe": {"period_seconds": 10, "failure_threshold": 3, "timeout_seconds": 5}}
    # The summary says where the file is.
    summary = run.task_results("summary | Print where this run's reports, charts and recommended vars files are")
    assert summary and str(stack["reports"] / f"calibrate-{ns}.yml") in summary[0].msg, run.describe()
    # Only the runner was restarted; the chatbot's Deployments were not touched.
    assert {n: deployments.get(namespace=ns, name=n).metadata.generation for n in chatbot_before} == chatbot_before


def test_bad_input_and_a_foreign_file_stop_before_any_change(kube, stack, tmp_path):
    ns = stack["namespace"]
    generation = runner(kube, ns).metadata.generation
    run = tuning(stack, "calibrate", "-e", "tuning_calibrate_restarts=0")
    assert run.rc != 0, run.describe()
    message = run.failure_message()
    assert "tuning_calibrate_restarts must be 1 to 20 (got 0)" in message and "\n" not in message.strip(), message

    mine = tmp_path / "main.yml"
    mine.write_text("chatbot_backend_replicas: 2\n")
    run = tuning(stack, "calibrate", "-e", f"tuning_calibrate_vars_file={mine}")
    assert run.rc != 0, run.describe()
    assert f"{mine} is a directory or a file not written by calibrate or rightsize" in run.failure_message(), run.describe()
    assert mine.read_text() == "chatbot_backend_replicas: 2\n"
    assert runner(kube, ns).metadata.generation == generation  # no restart


def quantity(text):
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    m = re.match(r"^([0-9.]+)([a-zA-Z]*)$", text)
    return float(m.group(1)) * units.get(m.group(2), 1)


def served_usage(kube, ns):
    """{(workload, container): (cpu, memory)} the metrics API serves for the three containers rightsize covers.
    metrics-server leaves a pod out of a listing until its first two scrapes of it, and now and then after (one CI
    run read the namespace with the runner missing), so read until all three are there, for at most 60 s."""
    wanted = {("docker-model-runner", "model-runner"), ("go-backend", "backend"), ("react-frontend", "frontend")}
    deadline = time.monotonic() + 60
    while True:
        usage = {}
        for pm in kube.resources.get(api_version="metrics.k8s.io/v1beta1", kind="PodMetrics").get(namespace=ns).items:
            workload = pm.metadata.name.rsplit("-", 2)[0]
            for c in pm.containers:
                usage[(workload, c.name)] = (quantity(c.usage.cpu), quantity(c.usage["memory"]))
        if wanted <= usage.keys() or time.monotonic() > deadline:
            assert wanted <= usage.keys(), usage
            return usage
        time.sleep(3)


def test_rightsize_recommends_from_the_metrics_api(kube, stack):
    ns = stack["namespace"]
    generations = {d.metadata.name: d.metadata.generation
                   for d in kube.resources.get(api_version="apps/v1", kind="Deployment").get(namespace=ns).items}
    served_usage(kube, ns)  # the runner restarted in the calibrate tests: its first scrape is in before the run
    run = tuning(stack, "rightsize", "-e", "tuning_rightsize_window_seconds=15", "-e", "tuning_rightsize_interval_seconds=15")
    assert run.rc == 0, run.describe()
    # What the metrics API serves now (SIMULATION: KWOK reports the annotations, steady).
    usage = served_usage(kube, ns)
    assert usage[("docker-model-runner", "model-runner")][1] == 3 * 2**30, usage
    assert ("docker-model-runner", "model-prepull") not in usage  # SIMULATION: the sidecar is not reported

    text, values = read_vars_file(stack["reports"] / f"rightsize-{ns}.yml")
    assert "90th percentile" in text and "Vertical Pod Autoscaler" in text and "from 2 samples" in text, text
    for variable, key in (("model_runner_resources", ("docker-model-runner", "model-runner")),
                          ("chatbot_backend_resources", ("go-backend", "backend")),
                          ("chatbot_frontend_resources", ("react-frontend", "frontend"))):
        cpu, memory = usage[key]
        rec = values[variable]
        # steady usage: every percentile is the usage; requests + 15 %, limits + 50 % (CPU within 1 % of the
        # scrape-to-scrape rate KWOK reports)
        assert quantity(rec["requests"]["cpu"]) == pytest.approx(max(cpu * 1.15, 0.010), rel=0.01, abs=0.0011), (variable, rec, cpu)
        assert quantity(rec["limits"]["cpu"]) == pytest.approx(max(cpu * 1.5, 0.010), rel=0.01, abs=0.0011), (variable, rec, cpu)
        assert rec["requests"]["memory"] == f"{math.ceil(memory * 1.15 / 2**20)}Mi", (variable, rec, memory)
        assert rec["limits"]["memory"] == f"{math.ceil(memory * 1.5 / 2**20)}Mi", (variable, rec, memory)
    # no sample of the sidecar: its current values kept, and said
    assert values["model_runner_prepull_resources"] == {"requests": {"cpu": "10m", "memory": "16Mi"},
                                                        "limits": {"cpu": "100m", "memory": "64Mi"}}
    assert "model_runner_prepull_resources: no usage sample" in text
    # The chart beside it, and the summary says where both are.
    chart = (stack["reports"] / f"rightsize-{ns}.svg").read_text()
    assert chart.lstrip().startswith("<?xml") and "<svg" in chart and "chatbot_backend_resources: cpu" in chart
    summary = run.task_results("summary | Print where this run's reports, charts and recommended vars files are")
    assert summary and f"rightsize-{ns}.svg" in summary[0].msg and f"rightsize-{ns}.yml" in summary[0].msg
    # Read-only: no Deployment changed.
    assert {d.metadata.name: d.metadata.generation for d in kube.resources.get(
        api_version="apps/v1", kind="Deployment").get(namespace=ns).items} == generations


def test_loadtest_chart_and_report_follow_the_hpa(kube, stack):
    """SIMULATION: the load test's Job pods do not run on KWOK nodes, so the load is played by raising the running
    backend pod's `kwok.x-k8s.io/usage-cpu` annotation to 300m (3x its 100m request); metrics-server and the HPA
    controller are real and scale the real Deployment."""
    ns = stack["namespace"]
    pods = kube.resources.get(api_version="v1", kind="Pod")
    (backend,) = [p for p in pods.get(namespace=ns, label_selector="app=go-backend").items
                  if not p.metadata.deletionTimestamp]
    pods.patch(namespace=ns, name=backend.metadata.name, content_type="application/merge-patch+json",
               body={"metadata": {"annotations": {"kwok.x-k8s.io/usage-cpu": "300m"}}})
    run = tuning(stack, "loadtest", "-e", "autoscaling_loadtest_scale_out_timeout=180")
    assert run.rc == 0, run.describe()
    hpa = kube.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler").get(namespace=ns, name="backend-hpa")
    assert hpa.status.desiredReplicas > 1, hpa.status
    report = (stack["reports"] / f"loadtest-{ns}.txt").read_text().splitlines()
    samples = [re.match(r"^\s*([0-9.]+) s  replicas (\d+) -> (\d+)  CPU (\S+)", line) for line in report]
    samples = [m.groups() for m in samples if m]
    assert samples, report
    # The last sample: the HPA wanted more than minReplicas and had them, as the cluster shows now.
    _, current, desired, _ = samples[-1]
    assert int(desired) > 1 and int(current) >= int(desired), samples
    assert hpa.status.currentReplicas >= int(current), (samples, hpa.status)
    events = kube.resources.get(api_version="v1", kind="Event").get(
        namespace=ns, field_selector="involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale").items
    assert events and all(e.message in report[1] for e in events), (report[1], [e.message for e in events])
    chart = (stack["reports"] / f"loadtest-{ns}.svg").read_text()
    for words in (f"Load test of {ns}/backend-hpa", "Replicas", "HPA target 70 %", "100m x current replicas"):
        assert words in chart, words
    summary = run.task_results("summary | Print where this run's reports, charts and recommended vars files are")
    assert summary and f"loadtest-{ns}.svg" in summary[0].msg and f"loadtest-{ns}.txt" in summary[0].msg
