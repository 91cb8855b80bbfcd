"""Integration tests against the running test cluster (`make cluster-up`).

They talk to a real kube-apiserver (with real controllers and scheduler);
KWOK simulates the nodes and the pod lifecycle. Each test says where it
relies on the simulation.
"""

import secrets
from pathlib import Path

import pytest
from integration_helpers import kube_env


@pytest.fixture(scope="session")
def kube():
    """A kubernetes DynamicClient for the test cluster; skips nothing: fails if the cluster is down."""
    from kubernetes import config, dynamic

    kubeconfig, context = kube_env()
    if not Path(kubeconfig).exists():
        pytest.fail(f"No test cluster: {kubeconfig} is missing. Run `make cluster-up` first.")
    return dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig, context=context))


@pytest.fixture()
def api_key():
    """A random, secret-looking API key, so that a leak in the output can be searched for."""
    return "sk-test-" + secrets.token_hex(20)


