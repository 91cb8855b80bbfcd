"""The load generator is removed on every path, failure included.

SIMULATION: on KWOK nodes the load pods do not run, they are marked complete,
so the backend's CPU never rises and the HPA never scales out. That makes the
load test fail at its scale-out timeout, which is the path under test.
"""

import pytest
from integration_helpers import run_playbook

NAMESPACE = "ai-loadtest"


@pytest.fixture()
def namespace_with_hpa(kube):
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    hpas = kube.resources.get(api_version="autoscaling/v2", kind="HorizontalPodAutoscaler")
    hpas.create(
        namespace=NAMESPACE,
        body={
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "backend-hpa"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "go-backend"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
                ],
            },
        },
    )
    yield NAMESPACE
    namespaces.delete(name=NAMESPACE)


def test_loadtest_job_is_removed_after_a_failed_run(kube, namespace_with_hpa, api_key):
    jobs = kube.resources.get(api_version="batch/v1", kind="Job")
    result = run_playbook(
        "playbooks/autoscaling.yml",
        "--tags",
        "loadtest",
        "-e",
        f"ai_stack_namespace={namespace_with_hpa}",
        "-e",
        "autoscaling_loadtest_scale_out_timeout=10",
        api_key=api_key,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "did not scale above minReplicas" in output, output[-3000:]
    # The Job was created (the play got that far) ...
    assert "Start the bounded load-test Job" in output
    # ... and is gone afterwards, with its pods.
    assert [j.metadata.name for j in jobs.get(namespace=namespace_with_hpa).items] == []
    pods = kube.resources.get(api_version="v1", kind="Pod").get(
        namespace=namespace_with_hpa, label_selector="app.kubernetes.io/name=backend-loadtest"
    )
    assert pods.items == []
