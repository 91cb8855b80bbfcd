"""Tests on the real kind cluster (`make kind-up`; `make kind-integration` runs them): real
containers, volumes and nodes, for what the simulated cluster cannot show. They use the fixtures
of tests/integration/conftest.py with K8S_AUTH_KUBECONFIG and K8S_AUTH_CONTEXT set to the kind
cluster's, and stop at once on any other cluster."""

import os

import pytest

from ai_stack_testlib import ROOT, cluster_env


@pytest.fixture(scope="session", autouse=True)
def on_kind():
    if not cluster_env()["K8S_AUTH_CONTEXT"].startswith("kind-"):
        pytest.fail("tests/integration/kind need the kind cluster: run them with `make kind-integration`")


@pytest.fixture(scope="session")
def kind_env():
    """The environment a run on kind needs: the cluster, and the Docker engine the chatbot role
    loads its images from (the kind cluster's, .kindcluster/docker-host)."""
    host = os.environ.get("DOCKER_HOST") or (ROOT / ".kindcluster" / "docker-host").read_text().strip()
    return {**cluster_env(), "DOCKER_HOST": host}
