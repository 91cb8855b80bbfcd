"""Bad input for any role the run executes stops site.yml before the first change.

Against the simulated cluster's real API server (nothing here depends on KWOK's simulation):
each run names a namespace that does not exist, and after the refusal it still does not
exist, the run reports changed=0, and the one-line message names the variable to fix.
Before site.yml validated every role first, each of these changed the cluster (the
namespace, the PVC, ...) and then failed at the role whose input was bad.
"""

import pytest
from ai_stack_testlib import cluster_env, run_playbook

NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")

CASES = [
    # (id, extra arguments, whether ANTHROPIC_API_KEY is set, the variable the message names)
    ("api-key-unset", (), False, "config_anthropic_api_key"),
    ("backend-replicas-negative", ("-e", "chatbot_backend_replicas=-1"), True, "chatbot_backend_replicas"),
    ("runner-replicas-not-a-number", ("-e", "model_runner_replicas=three"), True, "model_runner_replicas"),
    ("hpa-min-above-max", ("-e", "autoscaling_backend_min_replicas=9"), True, "autoscaling_backend_min_replicas"),
    ("kuberay-chart-2", ("--tags", "kuberay", "-e", "kuberay_chart_version=2.0.0"), True, "kuberay_chart_version"),
]


@pytest.mark.namespace_absent
@pytest.mark.parametrize("case_id,args,key_set,variable", CASES, ids=[c[0] for c in CASES])
def test_bad_input_stops_before_anything_changes(kube, temp_namespace, api_key, case_id, args, key_set, variable):
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    result = run_playbook(
        "site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={temp_namespace}", *args,
        api_key=api_key if key_set else "", extra_env=cluster_env(), timeout=300,
    )
    assert result.rc != 0, result.describe()
    assert not result.changed, result.describe()
    assert [r for r in result.results() if r.changed] == [], result.describe()
    # Nothing reached the cluster: the namespace was never created.
    assert temp_namespace not in [n.metadata.name for n in namespaces.get().items]
    failure = result.failure()
    assert failure is not None, result.describe()
    # Refused by the first pass (site.yml's pre-task), not by the role when its turn came.
    assert failure.name.startswith(("Validate | ", "validate | ")), failure.name
    message = failure.msg if not failure.censored else ""
    assert failure.censored or variable in message, message
    assert failure.censored or "\n" not in message.strip(), message


CLEANUP_CASES = [
    # (id, extra arguments, the task that refuses, what its message names)
    ("other-context", ("-e", "cluster_expected_context=docker-desktop"), "api | Check that it is the expected context",
     "cluster_expected_context"),
    # The namespace is deleted last; its bad input stops the run before the first deletion.
    ("namespace-timeout-0", ("-e", "namespace_delete_timeout=0"), "validate | ", "namespace_delete_timeout"),
    # The last tool removed; (no KubeRay operator here: its check would ask for helm, which this machine's
    # PATH may not have.)
    ("kubeflow-unpinned-with-the-tools", ("-e", "cleanup_ecosystem_tools=true", "-e", "kuberay_operator_managed=false",
                                          "-e", "kubeflow_version=main"), "validate | ", "kubeflow_version"),
]


@pytest.mark.parametrize("case_id,args,refused_by,named", CLEANUP_CASES, ids=[c[0] for c in CLEANUP_CASES])
def test_cleanup_checks_the_context_and_the_input_before_deleting(kube, temp_namespace, api_key, case_id, args,
                                                                    refused_by, named):
    """playbooks/cleanup.yml deletes nothing on a cluster other than the one stated, nor with bad input for
    any role it runs: the refusal comes from the first checks (the context, then every role's input), and
    the test's namespace (with a ConfigMap in it) is still there afterwards."""
    configmaps = kube.resources.get(api_version="v1", kind="ConfigMap")
    configmaps.create(namespace=temp_namespace, body={"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"name": "keep-me"}, "data": {"a": "b"}})
    # The test's -e comes last and wins over run_playbook's own cluster_expected_context.
    result = run_playbook("playbooks/cleanup.yml", "-e", f"ai_stack_namespace={temp_namespace}", *args,
                          api_key=api_key, extra_env=cluster_env(), timeout=300)
    assert result.rc != 0, result.describe()
    assert not result.changed, result.describe()
    failure = result.failure()
    assert failure is not None and failure.name.startswith(refused_by), result.describe()
    assert named in failure.msg and "\n" not in failure.msg.strip(), failure.msg
    # Nothing but the first checks ran: no task of a deletion step (the roles' run, sample, remove files).
    first_checks = [r for r in result.results() if r.role in ("cluster", "ai_stack") or "/tasks/validate.yml:" in r.path
                    or r.name.startswith(("Cleanup | Check", "Cleanup | Validate"))]
    assert first_checks == result.results(), [f"{r.task} ({r.path})" for r in result.results() if r not in first_checks]
    namespace = kube.resources.get(api_version="v1", kind="Namespace").get(name=temp_namespace)
    assert not namespace.metadata.deletionTimestamp
    assert configmaps.get(namespace=temp_namespace, name="keep-me").data.a == "b"
