"""The cluster role's context check compares with the context the user states, so it can fail.

Runs against the simulated cluster (real API server; nothing here depends on the simulation).
"""

from ai_stack_testlib import cluster_env, run_playbook


def test_a_context_other_than_the_stated_one_stops_before_any_change(kube, api_key):
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    result = run_playbook(
        "site.yml", "-e", "cluster_expected_context=docker-desktop", "-e", "ai_stack_namespace=ai-expected-context",
        "-e", "chatbot_image_load_enabled=false",  # no Docker images here: the input checks come first
        api_key=api_key, extra_env=cluster_env(), timeout=300,
    )
    assert result.rc != 0, result.describe()
    failed = result.failed_tasks()
    assert [r.name for r in failed] == ["api | Check that it is the expected context"], result.describe()
    message = result.failure_message()
    assert "cluster_expected_context" in message and "'docker-desktop'" in message, message
    assert "'kwok-desktop-sim'" in message, message
    assert not result.changed, result.describe()
    assert "ai-expected-context" not in [n.metadata.name for n in namespaces.get().items]
