"""The load generator is removed on every path, failure included.

SIMULATION: on KWOK nodes the load pods do not run, they are marked complete,
so the backend's CPU never rises and the HPA never scales out. That makes the
load test fail at its scale-out timeout, which is the path under test.
"""

import pytest
from ai_stack_testlib import cluster_env, run_playbook


@pytest.fixture()
def namespace_with_hpa(kube, temp_namespace):
    hpas = kube.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
    hpas.create(
        namespace=temp_namespace,
        body={
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "backend-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "go-backend"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                    }
                ],
            },
        },
    )
    return temp_namespace


def test_loadtest_job_is_removed_after_a_failed_run(kube, namespace_with_hpa, api_key, tmp_path):
    jobs = kube.resources.get(api_version="batch/v1", kind="Job")
    result = run_playbook(
        "site.yml",
        "--tags",
        "loadtest",
        "-e",
        f"ai_stack_namespace={namespace_with_hpa}",
        "-e",
        "autoscaling_loadtest_scale_out_timeout=10",
        "-e",
        f"ai_stack_report_dir={tmp_path}",
        api_key=api_key,
        extra_env=cluster_env(),
        timeout=900,
    )
    assert result.rc != 0, result.describe()
    # Why, in words from the HPA's status, not a raw dict: here there is no go-backend to scale (the
    # controller says so once it has looked at the new HPA; it looks every 15 s).
    message = result.failure_message()
    assert "did not scale above minReplicas=1 within 10 s: " in message, message
    assert ("AbleToScale is False (FailedGetScale" in message or "reports no current metrics yet" in message), message
    assert "{" not in message and "Unknown error" not in message, message
    # The chart is drawn on failure too (what the HPA showed: no metrics, one replica), and the message says where.
    chart = tmp_path / f"loadtest-{namespace_with_hpa}.svg"
    assert f"Chart: {chart}." in message, message
    svg = chart.read_text()
    assert "<svg" in svg and f"Load test of {namespace_with_hpa}/backend-hpa" in svg and "HPA target 70 %" in svg
    # Only the load test ran (--tags loadtest): no role's deploy tasks. The input checks (ai_stack's
    # validate entry point, then each role's validate tasks) and the cluster checks run whatever the
    # tags, and every role's argument spec is checked (Ansible tags that `always`).
    ran = [r for r in result.results() if not r.skipped and not r.action.endswith("validate_argument_spec")]
    assert {r.role for r in ran} <= {"", "ai_stack", "cluster", "autoscaling"}, result.describe()
    assert not [r for r in ran if r.role in ("ai_stack", "cluster") and r.changed], result.describe()
    # The autoscaling role's input was checked first, before the load test changed anything.
    assert [r for r in ran if r.role == "autoscaling" and r.name.startswith("validate |")], result.describe()
    # The Job was created (the play got that far) ...
    started = result.task_results("loadtest | Start the bounded load-test Job")
    assert started and all(r.changed and not r.failed for r in started), result.describe()
    # ... removed after the failure ...
    removed = result.task_results("loadtest | Remove the load generator")
    assert removed and all(r.changed and not r.failed for r in removed), result.describe()
    # ... and the Job is gone, with its pods.
    assert [j.metadata.name for j in jobs.get(namespace=namespace_with_hpa).items] == []
    pods = kube.resources.get(api_version="v1", kind="Pod").get(
        namespace=namespace_with_hpa, label_selector="app.kubernetes.io/name=backend-loadtest"
    )
    assert pods.items == []
