"""`--check --diff` against a real API server changes nothing.

The simulated cluster has no Docker, so the chatbot images are not loaded
(chatbot_image_load_enabled=false), as in the molecule scenarios.

Uses the real kube-apiserver's server-side dry run; no pod needs to run, so
nothing here depends on KWOK's simulation.
"""

import base64
import json

import pytest
from ai_stack_testlib import PlaybookResult, cluster_env, run_playbook

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

# What site.yml creates in the stack's namespace with the defaults (role defaults).
STACK_OBJECTS = {
    ("ConfigMap", "dmr-config"),
    ("PersistentVolumeClaim", "model-storage"),
    ("Deployment", "docker-model-runner"),
    ("Deployment", "go-backend"),
    ("Deployment", "react-frontend"),
    ("Service", "docker-model-runner"),
    ("Service", "go-backend"),
    ("Service", "react-frontend"),
}


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


def would_change(result: PlaybookResult, namespace: str) -> set:
    """(kind, name) of the objects the kubernetes.core.k8s tasks report they would change in the
    namespace (or that are the namespace), from the dry-run objects in their results (no_log
    results are censored and left out)."""
    found = set()
    for r in result.results():
        if r.action != "kubernetes.core.k8s" or r.censored:
            continue
        for item in r.items():
            obj = item.get("result") if item.get("changed") else None
            if isinstance(obj, dict) and obj.get("kind"):
                meta = obj.get("metadata", {})
                if meta.get("namespace") == namespace or (obj["kind"], meta.get("name")) == ("Namespace", namespace):
                    found.add((obj["kind"], meta.get("name")))
    return found


def check_run(namespace, api_key):
    return run_playbook(
        "site.yml",
        "--check",
        "--diff",
        *NO_DOCKER,
        "-e",
        f"ai_stack_namespace={namespace}",
        api_key=api_key,
        extra_env=cluster_env(),
        timeout=900,
    )


def test_check_mode_on_empty_namespace_changes_nothing(kube, temp_namespace, api_key):
    before = snapshot(kube, temp_namespace)
    result = check_run(temp_namespace, api_key)
    assert result.rc == 0, result.describe()
    assert result.failed_tasks() == [], result.describe()
    after = snapshot(kube, temp_namespace)
    assert after == before, f"check mode changed the cluster: before={before} after={after}"
    # Only the namespace (and the controller-manager's CA ConfigMap) existed before and after.
    assert set(after) == {("Namespace", temp_namespace), ("ConfigMap", "kube-root-ca.crt")}
    # Check mode reports what it would change: the stack's objects would be created ...
    assert result.changed, result.describe()
    would = would_change(result, temp_namespace)
    assert STACK_OBJECTS <= would, f"not reported as would-change: {sorted(STACK_OBJECTS - would)}"
    # ... the Secret too, by the config role's task, whose result no_log censors.
    assert [r for r in result.results() if r.role == "config" and r.censored and r.changed], result.describe()
    # The secret never appears in the output, --diff included.
    assert api_key not in result.output
    # The diffs carry no server bookkeeping (site.yml's module_defaults hide it).
    diffs = json.dumps([i.get("diff") for r in result.results() if r.action == "kubernetes.core.k8s" for i in r.items()])
    assert "managedFields" not in diffs and "creationTimestamp" not in diffs, diffs[:2000]


@pytest.mark.namespace_absent
def test_check_mode_on_missing_namespace_does_not_crash(kube, temp_namespace, api_key):
    """A first `--check` run on a cluster where the namespace does not exist yet."""
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    result = check_run(temp_namespace, api_key)
    assert result.rc == 0, result.describe()
    assert result.failed_tasks() == [], result.describe()
    assert temp_namespace not in [n.metadata.name for n in namespaces.get().items]
    # It reports that the namespace would be created ...
    assert ("Namespace", temp_namespace) in would_change(result, temp_namespace), result.describe()
    # ... and, rendered, the objects inside it that the API server cannot dry-run yet (with --diff, as YAML).
    previews = [line for r in result.results() if r.name.endswith("Show what a real run would create "
                                                                 "(check mode, namespace not created yet)")
                for line in (r.result.get("msg") or [])]
    previewed = {tuple(line.split()[2:4]) for line in previews if line.startswith("would create ")}
    expected = {(kind, f"{temp_namespace}/{name}") for kind, name in STACK_OBJECTS} | {
        ("Secret", f"{temp_namespace}/app-secrets"), ("HorizontalPodAutoscaler", f"{temp_namespace}/backend-hpa")}
    assert expected <= previewed, sorted(expected - previewed)
    assert any("kind: Deployment" in line for line in previews), previews
    assert api_key not in result.output
    assert base64.b64encode(api_key.encode()).decode() not in result.output  # not even as the Secret holds it
