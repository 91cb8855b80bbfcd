"""Unit tests of plugins/filter/tuning.py: probe calibration and right-sizing from measurements."""

import importlib.util

import pytest
from ai_stack_testlib import ROOT

_spec = importlib.util.spec_from_file_location("tuning_filters", ROOT / "plugins" / "filter" / "tuning.py")
tf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tf)

STARTUP = {"period_seconds": 10, "failure_threshold": 60, "timeout_seconds": 5}
READINESS = {"period_seconds": 10, "failure_threshold": 3, "timeout_seconds": 5}


def runner_pod(uid, created, started, ready, restarts=0, deleting=False, container="model-runner"):
    meta = {"name": f"docker-model-runner-5d9c7b-{uid}", "uid": uid, "creationTimestamp": created}
    if deleting:
        meta["deletionTimestamp"] = ready
    return {
        "metadata": meta,
        "spec": {"nodeName": "desktop-worker"},
        "status": {
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": created}]
            + ([{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else []),
            "containerStatuses": [{"name": container, "restartCount": restarts,
                                   "state": {"running": {"startedAt": started}} if started else {"waiting": {}}}],
            "initContainerStatuses": [{"name": "model-prepull", "restartCount": 0,
                                       "state": {"running": {"startedAt": created}}}],
        },
    }


def test_quantities():
    assert tf.quantity("250m") == 0.25
    assert tf.quantity("123456789n") == pytest.approx(0.123456789)
    assert tf.quantity("1500u") == pytest.approx(0.0015)
    assert tf.quantity("64Mi") == 64 * 2**20
    assert tf.quantity("2048Ki") == 2 * 2**20
    assert tf.quantity("4Gi") == 4 * 2**30
    assert tf.quantity(2) == 2.0
    assert tf.quantity("1e3") == 1000.0
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        tf.quantity("4GB")


def test_formats_round_up():
    assert tf.cpu_text(0.1234) == "124m"
    assert tf.cpu_text(0.25) == "250m"
    assert tf.cpu_text(0) == "1m"
    assert tf.memory_text(100 * 2**20) == "100Mi"
    assert tf.memory_text(100 * 2**20 + 1) == "101Mi"


def test_samples_time_each_start_from_the_container_start():
    pods = [
        runner_pod("b", "2026-01-01T10:05:00Z", "2026-01-01T10:05:04Z", "2026-01-01T10:05:49Z"),
        runner_pod("a", "2026-01-01T10:00:00Z", "2026-01-01T10:00:03Z", "2026-01-01T10:00:41Z"),
    ]
    samples = tf.calibrate_samples(pods)
    assert [s["uid"] for s in samples] == ["a", "b"]  # oldest first
    assert [s["load_seconds"] for s in samples] == [38, 45]
    assert [s["pod_seconds"] for s in samples] == [41, 49]
    assert all(s["measured_from"] == "container's start" for s in samples)


def test_calibrate_table_lines():
    pod = runner_pod("r", "2026-01-01T10:00:00Z", "2026-01-01T10:10:05Z", "2026-01-01T10:10:40Z", restarts=1)
    (line,) = tf.calibrate_table(tf.calibrate_samples([pod]))
    assert line == ("docker-model-runner-5d9c7b-r: created 2026-01-01T10:00:00Z, container started 2026-01-01T10:10:05Z, "
                    "Ready 2026-01-01T10:10:40Z: load time 640 s (from the pod's creation (the container was restarted "
                    "during its start)), 640 s from the pod's creation, restarted 1x")


def test_samples_skip_old_unready_deleting_and_repeated_pods():
    old = runner_pod("old", "2026-01-01T09:00:00Z", "2026-01-01T09:00:01Z", "2026-01-01T09:00:30Z")
    new = runner_pod("new", "2026-01-01T10:00:00Z", "2026-01-01T10:00:02Z", "2026-01-01T10:00:22Z")
    unready = runner_pod("unready", "2026-01-01T10:01:00Z", "2026-01-01T10:01:02Z", None)
    waiting = runner_pod("waiting", "2026-01-01T10:01:00Z", None, "2026-01-01T10:01:09Z")
    going = runner_pod("going", "2026-01-01T10:02:00Z", "2026-01-01T10:02:01Z", "2026-01-01T10:02:05Z", deleting=True)
    samples = tf.calibrate_samples([old, new, new, unready, waiting, going], exclude_uids=["old"])
    assert [s["uid"] for s in samples] == ["new"]


def test_a_restarted_start_is_timed_from_the_pod_creation():
    pod = runner_pod("r", "2026-01-01T10:00:00Z", "2026-01-01T10:10:05Z", "2026-01-01T10:10:40Z", restarts=1)
    (sample,) = tf.calibrate_samples([pod])
    assert sample["load_seconds"] == 640 and sample["restarts"] == 1
    assert sample["measured_from"].startswith("pod's creation")


def test_samples_of_a_sidecar_by_name():
    pod = runner_pod("s", "2026-01-01T10:00:00Z", "2026-01-01T10:00:03Z", "2026-01-01T10:00:41Z")
    (sample,) = tf.calibrate_samples([pod], container="model-prepull")
    assert sample["load_seconds"] == 41


def test_probe_recommendation_is_the_worst_start_plus_the_buffer():
    samples = [{"pod": "p1", "load_seconds": 38, "pod_seconds": 41},
               {"pod": "p2", "load_seconds": 45, "pod_seconds": 49},
               {"pod": "p3", "load_seconds": 41, "pod_seconds": 44}]
    rec = tf.probe_recommendation(samples, STARTUP, READINESS, buffer_percent=50, min_buffer_seconds=30)
    # worst 45 s + max(22.5, 30) = 75 s -> ceil(75 / 10) = 8 periods of 10 s
    assert rec["model_runner_startup_probe"] == {"period_seconds": 10, "failure_threshold": 8, "timeout_seconds": 5}
    assert rec["model_runner_readiness_probe"] == READINESS
    assert (rec["worst_seconds"], rec["median_seconds"], rec["budget_seconds"]) == (45, 41, 80)
    assert rec["current_budget_seconds"] == 600
    assert "worst 45 s + buffer 30 s" in rec["reasons"][1]
    assert "10 (kept) x failure_threshold 8 = 80 s" in rec["reasons"][1]


def test_probe_recommendation_percent_buffer_wins_for_slow_starts():
    samples = [{"pod": "p", "load_seconds": 400, "pod_seconds": 410}, {"pod": "q", "load_seconds": 380, "pod_seconds": 390}]
    rec = tf.probe_recommendation(samples, STARTUP, READINESS, buffer_percent=50, min_buffer_seconds=30)
    # 400 + 200 = 600 s: exactly 60 periods
    assert rec["model_runner_startup_probe"]["failure_threshold"] == 60
    assert rec["median_seconds"] == 390


def test_probe_recommendation_says_when_the_current_budget_kills_a_start():
    samples = [{"pod": "p", "load_seconds": 700, "pod_seconds": 700, "restarts": 2}]
    rec = tf.probe_recommendation(samples, STARTUP, READINESS, buffer_percent=20, min_buffer_seconds=30)
    assert rec["model_runner_startup_probe"]["failure_threshold"] == 84  # 700 + 140 = 840 s
    text = " ".join(rec["reasons"])
    assert "p (2x)" in text and "CrashLoopBackOff" in text


def test_probe_recommendation_never_below_one_period():
    rec = tf.probe_recommendation([{"pod": "p", "load_seconds": 0, "pod_seconds": 1}],
                                  {"period_seconds": 5, "failure_threshold": 3, "timeout_seconds": 1},
                                  READINESS, buffer_percent=0, min_buffer_seconds=0)
    assert rec["model_runner_startup_probe"]["failure_threshold"] == 1


@pytest.mark.parametrize("samples,startup,message", [
    ([], STARTUP, "no start of the model runner was measured"),
    ([{"pod": "p", "load_seconds": 1, "pod_seconds": 1}], {"period_seconds": 10}, "model_runner_startup_probe needs"),
])
def test_probe_recommendation_refuses_what_it_cannot_use(samples, startup, message):
    with pytest.raises(ValueError, match=message):
        tf.probe_recommendation(samples, startup, READINESS)


WORKLOADS = [
    {"name": "docker-model-runner", "containers": {"model-runner": "model_runner_resources",
                                                   "model-prepull": "model_runner_prepull_resources"}},
    {"name": "go-backend", "containers": {"backend": "chatbot_backend_resources"}},
    {"name": "react-frontend", "containers": {"frontend": "chatbot_frontend_resources"}},
]


def pod_metrics(pod, timestamp, **containers):
    return {"metadata": {"name": pod}, "timestamp": timestamp, "window": "15s",
            "containers": [{"name": n, "usage": {"cpu": c, "memory": m}} for n, (c, m) in containers.items()]}


def samples_of_backend(cpus, mems, pods=("go-backend-7f9c8d-abcde",)):
    results = []
    for i, (cpu, mem) in enumerate(zip(cpus, mems)):
        ts = f"2026-01-01T10:00:{i * 15 % 60:02d}Z" if i < 4 else f"2026-01-01T10:0{i * 15 // 60}:{i * 15 % 60:02d}Z"
        results.append({"resources": [pod_metrics(p, ts, backend=(cpu, mem)) for p in pods]})
    return results


def test_series_map_pods_to_variables_and_drop_repeated_samples():
    results = [
        {"resources": [pod_metrics("go-backend-7f9c8d-abcde", "2026-01-01T10:00:00Z", backend=("120000000n", "50Mi")),
                       pod_metrics("docker-model-runner-5d9c7b-xyz12", "2026-01-01T10:00:00Z",
                                   **{"model-runner": ("1500m", "5Gi"), "model-prepull": ("1m", "2Mi")}),
                       pod_metrics("go-backend-extra-7f9c8d-abcde", "2026-01-01T10:00:00Z", backend=("9", "9Gi")),
                       pod_metrics("mlflow-6c7d-qwert", "2026-01-01T10:00:00Z", mlflow=("9", "9Gi"))]},
        # the same scrape answered again (sampling faster than metrics-server's resolution)
        {"resources": [pod_metrics("go-backend-7f9c8d-abcde", "2026-01-01T10:00:00Z", backend=("120000000n", "50Mi"))]},
        [pod_metrics("go-backend-7f9c8d-abcde", "2026-01-01T10:00:15Z", backend=("80m", "52Mi"))],
    ]
    series = tf.rightsize_series(results, WORKLOADS)
    backend = series["chatbot_backend_resources"]
    assert [p[1] for p in backend["cpu"]] == [pytest.approx(0.12), pytest.approx(0.08)]
    assert [p[1] for p in backend["memory"]] == [50 * 2**20, 52 * 2**20]
    assert series["model_runner_resources"]["cpu"][0][1] == 1.5
    assert series["model_runner_prepull_resources"]["memory"][0][1] == 2 * 2**20
    assert series["chatbot_frontend_resources"]["cpu"] == []
    assert backend["workload"] == "go-backend" and backend["container"] == "backend"


def test_percentile_interpolates_like_numpy():
    assert tf.percentile([1, 2, 3, 4, 5], 50) == 3
    assert tf.percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert tf.percentile([10], 99) == 10
    assert tf.percentile(range(1, 101), 100) == 100


CURRENT = {"chatbot_backend_resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                                         "limits": {"cpu": "500m", "memory": "256Mi"}},
           "chatbot_frontend_resources": {"requests": {"cpu": "50m", "memory": "32Mi"},
                                          "limits": {"cpu": "200m", "memory": "128Mi"}}}


def test_recommendation_is_percentile_plus_margin_requests_and_larger_for_limits():
    cpus = ["100m", "100m", "100m", "100m", "100m", "100m", "100m", "100m", "100m", "300m"]
    mems = ["40Mi"] * 9 + ["100Mi"]
    series = tf.rightsize_series(samples_of_backend(cpus, mems), WORKLOADS[1:2])
    rec = tf.rightsize_recommendation(series, CURRENT, hpa_targets={"chatbot_backend_resources": "backend-hpa (70 %)"})
    backend = rec["values"]["chatbot_backend_resources"]
    # p90 of nine 100m and one 300m = 120m; + 15 % = 138m. p99 = 282m; + 50 % = 423m.
    assert backend["requests"]["cpu"] == "138m"
    assert backend["limits"]["cpu"] == "423m"
    # memory: p90 = 46Mi (40 + 0.1 * 60 = 46), + 15 % = 52.9 -> 53Mi; p99 = 94.6Mi, + 50 % = 141.9 -> 142Mi
    assert backend["requests"]["memory"] == "53Mi"
    assert backend["limits"]["memory"] == "142Mi"
    (row,) = rec["rows"]
    assert row["samples"] == 10 and row["cpu"]["current_request"] == "100m"
    text = "\n".join(rec["reasons"])
    assert "90th percentile" in text and "15 %" in text and "99th percentile + 50 %" in text
    assert "Vertical Pod Autoscaler" in text
    assert "backend-hpa (70 %) scales on CPU utilisation" in text


def test_recommendation_floors_and_limits_never_below_requests():
    series = tf.rightsize_series(samples_of_backend(["1m"] * 3, ["1Mi"] * 3), WORKLOADS[1:2])
    rec = tf.rightsize_recommendation(series, CURRENT, limit_margin_percent=15, request_margin_percent=15,
                                      limit_percentile=90)
    backend = rec["values"]["chatbot_backend_resources"]
    assert backend["requests"] == {"cpu": "10m", "memory": "16Mi"}
    assert backend["limits"] == {"cpu": "10m", "memory": "16Mi"}


def test_a_container_without_samples_keeps_its_values():
    series = tf.rightsize_series(samples_of_backend(["50m"] * 3, ["20Mi"] * 3), WORKLOADS[1:3])
    rec = tf.rightsize_recommendation(series, CURRENT)
    assert rec["values"]["chatbot_frontend_resources"] == CURRENT["chatbot_frontend_resources"]
    assert "chatbot_frontend_resources: no usage sample" in "\n".join(rec["reasons"])


def test_few_samples_are_said():
    series = tf.rightsize_series(samples_of_backend(["50m"] * 2, ["20Mi"] * 2), WORKLOADS[1:2])
    assert "Fewer than 3 samples" in "\n".join(tf.rightsize_recommendation(series, CURRENT)["reasons"])


def test_samples_of_every_replica_count():
    series = tf.rightsize_series(samples_of_backend(["50m"] * 3, ["20Mi"] * 3,
                                                    pods=("go-backend-7f9c8d-aaaaa", "go-backend-7f9c8d-bbbbb")),
                                 WORKLOADS[1:2])
    assert len(series["chatbot_backend_resources"]["cpu"]) == 6


@pytest.mark.parametrize("kwargs,message", [
    ({"request_percentile": 0}, "request percentile must be above 0"),
    ({"limit_percentile": 101}, "limit percentile must be above 0 and at most 100"),
    ({"limit_percentile": 80}, "must not be below the request's"),
    ({"limit_margin_percent": 5}, "must not be below the request's"),
])
def test_recommendation_refuses_inconsistent_settings(kwargs, message):
    series = tf.rightsize_series(samples_of_backend(["50m"] * 3, ["20Mi"] * 3), WORKLOADS[1:2])
    with pytest.raises(ValueError, match=message):
        tf.rightsize_recommendation(series, CURRENT, **kwargs)


def test_recommended_vars_file_text_is_marked_commented_and_valid_yaml():
    import yaml

    values = {"model_runner_startup_probe": {"period_seconds": 10, "failure_threshold": 8, "timeout_seconds": 5},
              "chatbot_backend_resources": {"requests": {"cpu": "47m", "memory": "35Mi"},
                                            "limits": {"cpu": "61m", "memory": "45Mi"}}}
    text = tf.recommended_vars_text(values, "# Recommended by ai-stack (roles/tuning):", ["Title.", "Use it with -e @x."],
                                    ["word " * 40, "short"])
    lines = text.splitlines()
    assert lines[0] == "# Recommended by ai-stack (roles/tuning):" and lines[1] == "# Title."
    assert all(len(line) <= 114 for line in lines)
    assert "#   word" in text and "# short" in text and "\n---\n" in text
    assert yaml.safe_load(text) == values
    assert list(yaml.safe_load(text)) == list(values)  # the order given
