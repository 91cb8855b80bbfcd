"""A PVC change the API server rejects stops with a message, and changes nothing.

Real API server validation; nothing here depends on KWOK's simulation.
"""

from integration_helpers import run_playbook

NAMESPACE = "ai-storage-test"


def test_shrinking_the_claim_is_refused_with_a_clear_message(kube, api_key):
    base = ("site.yml", "--tags", "namespace,storage", "-e", f"ai_stack_namespace={NAMESPACE}")
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    try:
        first = run_playbook(*base, api_key=api_key)
        assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
        shrink = run_playbook(*base, "-e", "storage_size=1Gi", api_key=api_key)
        output = shrink.stdout + shrink.stderr
        assert shrink.returncode != 0, output[-3000:]
        assert "The cluster rejects PVC" in output and "A claim cannot shrink" in output, output[-3000:]
        assert "Traceback" not in output
        pvc = kube.resources.get(api_version="v1", kind="PersistentVolumeClaim").get(
            namespace=NAMESPACE, name="model-storage"
        )
        assert pvc.spec.resources.requests["storage"] == "5Gi"
    finally:
        namespaces.delete(name=NAMESPACE)
