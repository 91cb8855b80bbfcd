"""A user who is admin of the namespace only runs the core stack's namespaced concerns.

Against the simulated cluster's real API server and RBAC (KWOK simulates the pods): a cluster admin
runs `--tags namespace` with namespace_admin_subjects naming a ServiceAccount, which binds the
built-in ClusterRole admin in the namespace. With that account's token only:
- `--tags network_policy,storage,config,model_runner,chatbot` deploys, saying that the node and
  capacity checks are skipped (it may not list nodes);
- `--tags namespace` and `--tags autoscaling` (cluster-scoped steps) stop with one line that starts
  with "Forbidden:", names the step and says what to do, and change nothing.
"""

import json

import pytest
import yaml
from ai_stack_testlib import cluster_env, run_playbook

NAMESPACED = "network_policy,storage,config,model_runner,chatbot"
NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")


def admin_kubeconfig(tmp_path, kube, namespace: str) -> dict:
    """A kubeconfig holding only the ServiceAccount `deployer`'s token; returns cluster_env-style vars."""
    from kubernetes import client

    core = client.CoreV1Api(kube.client)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "deployer"}})
    token = core.create_namespaced_service_account_token(
        "deployer", namespace, {"spec": {"audiences": [], "expirationSeconds": 3600}}
    ).status.token
    env = cluster_env()
    with open(env["K8S_AUTH_KUBECONFIG"]) as f:
        sim = yaml.safe_load(f)
    cluster = next(c for c in sim["clusters"] if c["name"] == sim["contexts"][0]["context"]["cluster"])
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "ns-admin",
        "clusters": [{"name": "sim", "cluster": cluster["cluster"]}],
        "users": [{"name": "deployer", "user": {"token": token}}],
        "contexts": [{"name": "ns-admin", "context": {"cluster": "sim", "user": "deployer", "namespace": namespace}}],
    }
    path = tmp_path / "ns-admin.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return {"K8S_AUTH_KUBECONFIG": str(path), "K8S_AUTH_CONTEXT": "ns-admin", "KUBECONFIG": str(path)}


@pytest.mark.namespace_absent
def test_namespace_admin_runs_the_namespaced_concerns(kube, temp_namespace, api_key, tmp_path):
    ns = temp_namespace
    subjects = [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]
    setup = run_playbook(
        "site.yml", "--tags", "namespace", "-e", f"ai_stack_namespace={ns}",
        "-e", json.dumps({"namespace_admin_subjects": subjects}),
        api_key=api_key, extra_env=cluster_env(), timeout=300,
    )
    assert setup.rc == 0, setup.describe()
    bindings = kube.resources.get(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding")
    binding = bindings.get(namespace=ns, name="ai-stack-admins")
    assert binding.roleRef.name == "admin" and binding.roleRef.kind == "ClusterRole"

    admin = admin_kubeconfig(tmp_path, kube, ns)
    run = run_playbook(
        "site.yml", "--tags", NAMESPACED, *NO_DOCKER, "-e", f"ai_stack_namespace={ns}",
        api_key=api_key, extra_env=admin, timeout=600,
    )
    assert run.rc == 0, run.describe()
    assert any("may not list nodes" in r.msg for r in run.results()), run.describe()
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")
    assert {d.metadata.name for d in deployments.get(namespace=ns).items} >= {
        "docker-model-runner", "go-backend", "react-frontend"}
    policies = kube.resources.get(api_version="networking.k8s.io/v1", kind="NetworkPolicy")
    assert "default-deny-ingress" in {p.metadata.name for p in policies.get(namespace=ns).items}

    for tags, step in (("namespace", "Applying the namespace"), ("autoscaling", "metrics-server")):
        refused = run_playbook(
            "site.yml", "--tags", tags, *NO_DOCKER, "-e", f"ai_stack_namespace={ns}",
            api_key=api_key, extra_env=admin, timeout=300,
        )
        assert refused.rc != 0, refused.describe()
        assert not refused.changed, refused.describe()
        message = refused.failure_message()
        assert message.startswith("Forbidden: ") and step in message, refused.describe()
        assert "cannot" in message and "\n" not in message.strip(), message
        assert "Traceback" not in refused.stdout + refused.stderr, refused.describe()
