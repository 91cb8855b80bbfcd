"""Integration tests against the running test cluster (`make cluster-up`).

They talk to a real kube-apiserver (with real controllers and scheduler);
KWOK simulates the nodes and the pod lifecycle. Each test says where it
relies on the simulation.

The helpers they share with the offline tests (run_playbook, new_api_key,
cluster_env) are in tests/ai_stack_testlib.py.
"""

import re
import secrets
import sys
import time
from pathlib import Path

import pytest

# `pytest tests/integration` alone does not load tests/conftest.py (no pytest config sets a
# rootdir above this directory), so put tests/ on the path for ai_stack_testlib here.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ai_stack_testlib import cluster_env, new_api_key  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "namespace_absent: temp_namespace gives a unique name but does not create the namespace"
    )


@pytest.fixture(scope="session")
def kube():
    """A kubernetes DynamicClient for the test cluster; skips nothing: fails if the cluster is down."""
    from kubernetes import config, dynamic

    env = cluster_env()
    kubeconfig, context = env["K8S_AUTH_KUBECONFIG"], env["K8S_AUTH_CONTEXT"]
    if not Path(kubeconfig).exists():
        pytest.fail(f"No test cluster: {kubeconfig} is missing. Run `make cluster-up` first.")
    return dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig, context=context))


@pytest.fixture()
def api_key():
    """A random, real-looking API key (tests/ai_stack_testlib.new_api_key), so that a leak can be searched for."""
    return new_api_key()


@pytest.fixture()
def temp_namespace(kube, request):
    """A namespace of the test's own, with a unique name, deleted after the test.

    It is created first, and the test starts once the controller-manager has published
    kube-root-ca.crt into it (so that ConfigMap is part of any "before"). With
    @pytest.mark.namespace_absent it is not created: the test gets a name no namespace
    has (and whatever the test created under it is deleted after all the same).
    """
    from kubernetes.dynamic.exceptions import NotFoundError

    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"ai-{slug}-{secrets.token_hex(3)}"
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    if request.node.get_closest_marker("namespace_absent"):
        assert name not in [n.metadata.name for n in namespaces.get().items]
    else:
        namespaces.create(body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        configmaps = kube.resources.get(api_version="v1", kind="ConfigMap")
        for _ in range(60):
            if [c for c in configmaps.get(namespace=name).items if c.metadata.name == "kube-root-ca.crt"]:
                break
            time.sleep(0.5)
        else:
            namespaces.delete(name=name)
            pytest.fail(f"kube-root-ca.crt never appeared in the new namespace {name}")
    yield name
    try:
        namespaces.delete(name=name)
    except NotFoundError:
        pass
