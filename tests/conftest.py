"""Fixtures of the offline test suite (no Kubernetes cluster): rendered manifests per scenario."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from ai_stack_testlib import NONDEFAULT_VARS_FILE, render

# Scenario name -> vars file given to tests/render.yml with -e @file (None: the defaults).
SCENARIOS = {"default": None, "nondefault": NONDEFAULT_VARS_FILE}


@pytest.fixture(scope="session")
def renders(tmp_path_factory):
    """{scenario: Rendered}; both scenarios are rendered at once by tests/render.yml."""
    base = tmp_path_factory.mktemp("render")
    with ThreadPoolExecutor(max_workers=len(SCENARIOS)) as pool:
        futures = {
            name: pool.submit(render, base / name, scenario=name, vars_file=vars_file)
            for name, vars_file in SCENARIOS.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(params=list(SCENARIOS))
def rendered(request, renders):
    """The manifests of one scenario (the test runs once per scenario)."""
    return renders[request.param]


@pytest.fixture(params=list(SCENARIOS))
def objects(request, renders):
    """The list of rendered Kubernetes objects of one scenario."""
    return renders[request.param].objects
