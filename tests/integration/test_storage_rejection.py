"""A PVC change the API server rejects stops with a message, and changes nothing.

Real API server validation; nothing here depends on KWOK's simulation.
"""

from ai_stack_testlib import cluster_env, run_playbook


def test_shrinking_the_claim_is_refused_with_a_clear_message(kube, temp_namespace, api_key):
    base = ("site.yml", "--tags", "namespace,storage", "-e", f"ai_stack_namespace={temp_namespace}")
    first = run_playbook(*base, api_key=api_key, extra_env=cluster_env(), timeout=900)
    assert first.rc == 0 and first.failed_tasks() == [], first.describe()
    assert [r for r in first.task_results("pvc | Apply or delete the claim") if r.changed], first.describe()

    shrink = run_playbook(*base, "-e", "storage_size=1Gi", api_key=api_key, extra_env=cluster_env(), timeout=900)
    assert shrink.rc != 0, shrink.describe()
    failure = shrink.failure()
    assert failure.role == "storage" and failure.name == "pvc | Explain what the cluster rejected", shrink.describe()
    message = shrink.failure_message()
    assert "The cluster rejects PVC" in message and "A claim cannot shrink" in message, shrink.describe()
    # The apply the API server refused is the only other failure, and it was rescued.
    assert [r.name for r in shrink.failed_tasks()] == ["pvc | Apply or delete the claim", failure.name]
    assert shrink.stats["localhost"]["changed"] == 0, shrink.describe()
    assert "Traceback" not in shrink.output
    pvc = kube.resources.get(api_version="v1", kind="PersistentVolumeClaim").get(
        namespace=temp_namespace, name="model-storage"
    )
    assert pvc.spec.resources.requests["storage"] == "5Gi"
