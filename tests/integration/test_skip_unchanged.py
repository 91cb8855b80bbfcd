"""A run asks the API server first which objects an apply would change (lookup k8s_unchanged: the
dry-run apply and comparison kubernetes.core.k8s makes in check mode), and runs kubernetes.core.k8s
for those only (ai_stack_skip_unchanged). A no-op then starts no module; whatever drifted is applied.

Uses the real kube-apiserver (its server-side dry run, its defaulting and field ownership). The
Deployments' availability, which the wait condition checks, comes from KWOK's simulated pods.
"""

import json

from ai_stack_testlib import cluster_env, run_playbook

NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")

# The role tasks that apply with kubernetes.core.k8s in a run of the core stack with the defaults.
APPLIES = {
    "namespace : namespace | Apply or delete the namespace",
    "network_policy : NetworkPolicy | Apply or delete the policies",
    "storage : pvc | Apply or delete the claim",
    "config : configmap | Apply the model runner ConfigMap",
    "config : secret | Apply the application Secret",
    "chatbot : workloads | Apply the Services and Deployments and wait until they are available, at most 300 s",
    "autoscaling : hpa | Apply the HorizontalPodAutoscalers",
}


def deploy(namespace, api_key, *args):
    result = run_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={namespace}", *args,
                          api_key=api_key, extra_env=cluster_env(), timeout=900)
    assert result.rc == 0, result.describe()
    return result


def modules_run(result) -> list[str]:
    """The kubernetes.core.k8s tasks that ran (not skipped, for some item), by "role : name"."""
    return [r.task for r in result.results()
            if r.action == "kubernetes.core.k8s" and not r.skipped and any(not i.get("skipped") for i in r.items())]


def summary(result) -> list[str]:
    (deployed,) = result.task_results("summary | Print what is deployed and what is ready")
    return [item["msg"] for item in deployed.items()]


def test_a_no_op_starts_no_module_and_a_drift_is_applied(kube, temp_namespace, api_key):
    first = deploy(temp_namespace, api_key)
    assert first.changed, first.describe()
    assert APPLIES <= set(modules_run(first)), modules_run(first)

    again = deploy(temp_namespace, api_key)
    assert not again.changed, again.describe()
    assert modules_run(again) == [], f"a no-op ran kubernetes.core.k8s: {modules_run(again)}"
    # The summary reports the Deployments all the same, from the live objects the dry run returned.
    assert sorted(line.split(":")[0] for line in summary(again)) == [
        "Deployment docker-model-runner", "Deployment go-backend", "Deployment react-frontend"], summary(again)
    assert all(" 1/1 ready" in line for line in summary(again)), summary(again)

    # Drift, by other field managers: a value of ours changed, an object deleted, a label of ours removed.
    configmaps = kube.resources.get(api_version="v1", kind="ConfigMap")
    services = kube.resources.get(api_version="v1", kind="Service")
    policies = kube.resources.get(api_version="networking.k8s.io/v1", kind="NetworkPolicy")
    model = configmaps.get(name="dmr-config", namespace=temp_namespace).data["MODEL_NAME"]
    configmaps.patch(name="dmr-config", namespace=temp_namespace, body={"data": {"MODEL_NAME": "drifted"}},
                     content_type="application/merge-patch+json", field_manager="someone-else")
    services.delete(name="go-backend", namespace=temp_namespace)
    policies.patch(name="default-deny-ingress", namespace=temp_namespace,
                   body={"metadata": {"labels": {"app.kubernetes.io/part-of": None}}},
                   content_type="application/merge-patch+json", field_manager="someone-else")

    repaired = deploy(temp_namespace, api_key)
    assert repaired.changed, repaired.describe()
    assert sorted(modules_run(repaired)) == sorted([
        "config : configmap | Apply the model runner ConfigMap",
        "network_policy : NetworkPolicy | Apply or delete the policies",
        "chatbot : workloads | Apply the Services and Deployments and wait until they are available, at most 300 s"]), \
        modules_run(repaired)
    # Only what drifted went to the module: the one policy and the one Service, not their neighbours.
    (policy_task,) = repaired.task_results("NetworkPolicy | Apply or delete the policies")
    assert [[o["metadata"]["name"] for o in i["__network_policy_objects"]] for i in policy_task.items()] == \
        [["default-deny-ingress"]], policy_task.items()
    (workloads,) = repaired.task_results("workloads | Apply the Services and Deployments and wait until they are "
                                         "available, at most 300 s")
    assert [[(o["kind"], o["metadata"]["name"]) for o in i["__chatbot_objects"]] for i in workloads.items()] == \
        [[("Service", "go-backend")]], workloads.items()
    assert configmaps.get(name="dmr-config", namespace=temp_namespace).data["MODEL_NAME"] == model
    assert services.get(name="go-backend", namespace=temp_namespace).spec.ports[0].port == 8080
    labels = policies.get(name="default-deny-ingress", namespace=temp_namespace).metadata.labels
    assert labels["app.kubernetes.io/part-of"] == "ai-chatbot", labels

    settled = deploy(temp_namespace, api_key)
    assert not settled.changed and modules_run(settled) == [], settled.describe()

    # A changed variable is an apply that changes something: the module runs, for that object only.
    scaled = deploy(temp_namespace, api_key, "-e", "chatbot_frontend_replicas=2")
    assert scaled.changed, scaled.describe()
    (workloads,) = scaled.task_results("workloads | Apply the Services and Deployments and wait until they are "
                                       "available, at most 300 s")
    assert [[(o["kind"], o["metadata"]["name"]) for o in i["__chatbot_objects"]] for i in workloads.items()] == \
        [[("Deployment", "react-frontend")]], workloads.items()
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")
    assert deployments.get(name="react-frontend", namespace=temp_namespace).spec.replicas == 2

    # Switched off, every object goes through the module again, and still nothing changes.
    modules = deploy(temp_namespace, api_key, "-e", "chatbot_frontend_replicas=2", "-e", "ai_stack_skip_unchanged=false")
    assert not modules.changed, modules.describe()
    assert APPLIES <= set(modules_run(modules)), modules_run(modules)


PROBE = """
- name: Ask k8s_unchanged about one Service
  hosts: localhost
  gather_facts: false
  vars:
    svc:
      apiVersion: v1
      kind: Service
      metadata: {{name: probe, namespace: {ns}}}
      spec: {{selector: {{app: probe}}, ports: [{{port: 80}}]}}
    other_port: "{{{{ svc | combine({{'spec': {{'ports': [{{'port': 81}}]}}}}, recursive=true) }}}}"
    missing: "{{{{ svc | combine({{'metadata': {{'name': 'not-there'}}}}, recursive=true) }}}}"
    auth:
      kubeconfig: "{{{{ lookup('ansible.builtin.env', 'K8S_AUTH_KUBECONFIG') }}}}"
      context: "{{{{ lookup('ansible.builtin.env', 'K8S_AUTH_CONTEXT') }}}}"
      server_side_apply: {{field_manager: ai-stack, force_conflicts: true}}
  tasks:
    - name: Apply the Service
      kubernetes.core.k8s:
        definition: "{{{{ svc }}}}"
        apply: true
        server_side_apply: {{field_manager: ai-stack, force_conflicts: true}}
        kubeconfig: "{{{{ auth.kubeconfig }}}}"
        context: "{{{{ auth.context }}}}"

    - name: Ask
      ansible.builtin.set_fact:
        same: "{{{{ query('k8s_unchanged', svc, **auth) | map(attribute='metadata.name') }}}}"
        same_no_bookkeeping: "{{{{ query('k8s_unchanged', svc, **auth) | map(attribute='metadata') | map('list') }}}}"
        port_changed: "{{{{ query('k8s_unchanged', other_port, **auth) }}}}"
        not_there: "{{{{ query('k8s_unchanged', [missing, svc], **auth) | map(attribute='metadata.name') }}}}"
        wait_not_met: "{{{{ query('k8s_unchanged', svc, wait=true, wait_condition={{'type': 'Ready'}}, **auth) }}}}"
        switched_off: "{{{{ query('k8s_unchanged', svc, enabled=false, **auth) }}}}"
        not_present: "{{{{ query('k8s_unchanged', svc, state='absent', **auth) }}}}"
        client_side: "{{{{ query('k8s_unchanged', svc, **(auth | combine({{'server_side_apply': {{}}}}))) }}}}"
"""


def test_the_lookup_returns_only_what_a_dry_run_finds_unchanged(kube, temp_namespace, api_key, tmp_path):
    play = tmp_path / "probe.yml"
    play.write_text(PROBE.format(ns=temp_namespace))
    result = run_playbook(str(play), api_key=api_key, extra_env=cluster_env())
    assert result.rc == 0, result.describe()
    (asked,) = result.task_results("Ask")
    facts = asked.result["ansible_facts"]
    assert facts["same"] == ["probe"], facts
    assert "managedFields" not in json.dumps(facts["same_no_bookkeeping"]), facts
    # Anything it cannot call unchanged is left to the module: a change, a missing object, an unmet wait
    # (a Service has no Ready condition), and whenever it is off, not asked to apply, or the apply is client-side.
    assert facts["port_changed"] == [], facts
    assert facts["not_there"] == ["probe"], facts
    for key in ("wait_not_met", "switched_off", "not_present", "client_side"):
        assert facts[key] == [], (key, facts)
    # The dry runs changed nothing: the port is still 80, and no object was created.
    services = kube.resources.get(api_version="v1", kind="Service")
    assert services.get(name="probe", namespace=temp_namespace).spec.ports[0].port == 80
    assert [s.metadata.name for s in services.get(namespace=temp_namespace).items] == ["probe"]
