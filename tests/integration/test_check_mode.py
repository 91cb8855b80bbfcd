"""`--check --diff` against a real API server changes nothing.

The simulated cluster has no Docker, so the chatbot images are not loaded
(chatbot_image_load_enabled=false), as in the molecule scenarios.

Uses the real kube-apiserver's server-side dry run; no pod needs to run, so
nothing here depends on KWOK's simulation.
"""

import time

import pytest

from integration_helpers import run_playbook

NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")

KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Service"),
    ("v1", "Pod"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
]


def snapshot(kube, namespace):
    """Name and resourceVersion of every object of interest in the namespace."""
    state = {}
    for api_version, kind in KINDS:
        api = kube.resources.get(api_version=api_version, kind=kind)
        for item in api.get(namespace=namespace).items:
            state[(kind, item.metadata.name)] = item.metadata.resourceVersion
    ns = kube.resources.get(api_version="v1", kind="Namespace").get(name=namespace)
    state[("Namespace", namespace)] = ns.metadata.resourceVersion
    return state


@pytest.fixture()
def empty_namespace(kube):
    name = "ai-check"
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    namespaces.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # The controller-manager publishes kube-root-ca.crt into every new namespace;
    # wait for it so that it is part of "before", not a change of check mode.
    configmaps = kube.resources.get(api_version="v1", kind="ConfigMap")
    for _ in range(60):
        if [c for c in configmaps.get(namespace=name).items if c.metadata.name == "kube-root-ca.crt"]:
            break
        time.sleep(0.5)
    else:
        pytest.fail("kube-root-ca.crt never appeared in the new namespace")
    yield name
    namespaces.delete(name=name)


def test_check_mode_on_empty_namespace_changes_nothing(kube, empty_namespace, api_key):
    before = snapshot(kube, empty_namespace)
    result = run_playbook(
        "site.yml", "--check", "--diff", *NO_DOCKER, "-e", f"ai_stack_namespace={empty_namespace}", api_key=api_key
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "changed=" in output
    after = snapshot(kube, empty_namespace)
    assert after == before, f"check mode changed the cluster: before={before} after={after}"
    # Only the namespace (and the controller-manager's CA ConfigMap) existed before and after.
    assert set(after) == {("Namespace", empty_namespace), ("ConfigMap", "kube-root-ca.crt")}
    # Check mode reports what it would change (the objects would be created).
    assert "would" in output or "changed" in output
    # The secret never appears in the output, --diff included.
    assert api_key not in output


def test_check_mode_on_missing_namespace_does_not_crash(kube, api_key):
    """A first `--check` run on a cluster where the namespace does not exist yet."""
    name = "ai-check-missing"
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    assert name not in [n.metadata.name for n in namespaces.get().items]
    result = run_playbook("site.yml", "--check", "--diff", *NO_DOCKER, "-e", f"ai_stack_namespace={name}", api_key=api_key)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert name not in [n.metadata.name for n in namespaces.get().items]
    assert api_key not in output
