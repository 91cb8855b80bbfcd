"""Unit tests of plugins/filter/stack.py and of merge_workloads in plugins/filter/cluster.py."""

import hashlib
import importlib.util
import json

import pytest
from ai_stack_testlib import ROOT


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "plugins" / "filter" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stack = _load("stack")
cluster = _load("cluster")

GOOD = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def test_every_filter_is_registered():
    assert set(stack.FilterModule().filters()) == {
        "resources_errors", "probe_errors", "image_errors", "data_checksum", "retries", "tags_select", "roles_for_tags",
        "hpa_scale_out_reason", "url_ports", "hpa_sample", "hpa_samples_table", "claim_users"}
    assert "merge_workloads" in cluster.FilterModule().filters()


def test_good_resources_have_no_errors():
    assert stack.resources_errors(GOOD, "x_resources") == []


@pytest.mark.parametrize(
    "resources,expected",
    [
        ({"requests": {"cpu": "100m", "memory": "64MB"}, "limits": GOOD["limits"]}, "x_resources.requests.memory must look like"),
        ({"requests": {"cpu": "fast", "memory": "64Mi"}, "limits": GOOD["limits"]}, "x_resources.requests.cpu must look like"),
        ({"requests": GOOD["requests"]}, "x_resources.limits must be a dict"),
        ("4Gi", "x_resources must be a dict"),
        ({"requests": {"cpu": "2", "memory": "64Mi"}, "limits": {"cpu": "1500m", "memory": "1Gi"}},
         "x_resources.requests.cpu (2) is above x_resources.limits.cpu (1500m)"),
        ({"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "1024Mi"}},
         "x_resources.requests.memory (2Gi) is above"),
    ],
)
def test_bad_resources_name_the_variable(resources, expected):
    errors = stack.resources_errors(resources, "x_resources")
    assert any(expected in e for e in errors), errors


def test_memory_units_compare_across_suffixes():
    same = {"requests": {"cpu": "500m", "memory": "1024Mi"}, "limits": {"cpu": "0.5", "memory": "1Gi"}}
    assert stack.resources_errors(same, "r") == []
    decimal = {"requests": {"cpu": "1", "memory": "1G"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert stack.resources_errors(decimal, "r") == []


def test_probe_errors():
    assert stack.probe_errors({"period_seconds": 10, "failure_threshold": "3"}, "p") == []
    assert stack.probe_errors({"period_seconds": 0}, "p") == ["p.period_seconds must be a positive integer (got 0)"]
    assert stack.probe_errors({"period_seconds": "ten"}, "p")
    assert stack.probe_errors({}, "p")


@pytest.mark.parametrize("image", ["go-backend:1.0.0", "registry.k8s.io/x/y:v0.8.0", "a/b@sha256:" + "0" * 64,
                                   "localhost:5000/ai/model:1"])
def test_pinned_images_pass(image):
    assert stack.image_errors(image, "i") == []


@pytest.mark.parametrize("image,expected", [("go-backend", "must be pinned"), ("busybox:latest", "must not use the latest tag"),
                                            ("localhost:5000/img", "must be pinned"), ("", "must be pinned")])
def test_unpinned_images_fail(image, expected):
    assert expected in stack.image_errors(image, "i")[0]


def test_data_checksum_is_stable_and_follows_the_data():
    one = {"B": "2", "A": "1"}
    same = {"A": "1", "B": "2"}
    other = {"A": "1", "B": "3"}
    assert stack.data_checksum(one) == stack.data_checksum(same)
    assert stack.data_checksum(one) != stack.data_checksum(other)
    # A port given as a number hashes like the string the ConfigMap holds.
    assert stack.data_checksum({"PORT": 12434}) == stack.data_checksum({"PORT": "12434"})
    empty = hashlib.sha256(json.dumps({}).encode()).hexdigest()
    assert stack.data_checksum({}) == empty == stack.data_checksum(None)


@pytest.mark.parametrize("timeout,delay,expected", [(300, 5, 60), (301, 5, 61), (1, 10, 1), ("120", "10", 12), (0, 5, 1)])
def test_retries(timeout, delay, expected):
    assert stack.retries(timeout, delay) == expected


def test_merge_workloads_takes_the_larger_count_and_the_owner_containers():
    merged = cluster.merge_workloads([
        {"name": "go-backend", "replicas": 1, "containers": [{"cpu": "100m", "memory": "64Mi"}]},
        {"name": "go-backend", "replicas": 3},
        {"name": "runner", "replicas": "0", "containers": [{"cpu": "1", "memory": "4Gi"}]},
    ])
    assert merged["go-backend"] == {"replicas": 3, "containers": [{"cpu": "100m", "memory": "64Mi"}]}
    assert merged["runner"]["replicas"] == 0


def test_k8s_plan_applies_everything_in_a_real_run_and_only_the_servable_in_check_mode():
    plan = _load("k8s_applicable").k8s_plan
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "new"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "new"}},
        {"apiVersion": "x.io/v1", "kind": "Thing", "metadata": {"name": "t"}},
        None,
    ]
    apis = {"v1": {"Namespace": {"namespaced": False}, "ConfigMap": {"namespaced": True}}}
    real = plan(docs, apis, [], False)
    assert real == {"apply": docs[:3], "skipped": []}
    check = plan(docs, apis, [], True)
    assert check["apply"] == docs[:1]
    assert len(check["skipped"]) == 2


def test_k8s_batches_one_call_for_all_objects_and_one_per_object_with_diff():
    batches = _load("k8s_applicable").k8s_batches
    svc = {"kind": "Service", "metadata": {"name": "a"}}
    dep = {"kind": "Deployment", "metadata": {"name": "a"}}
    assert batches([svc, None, dep], False) == [[svc, dep]]
    assert batches([svc, dep], True) == [[svc], [dep]]
    assert batches([], False) == [] and batches(None, True) == []


def test_k8s_batches_and_k8s_pending_leave_out_the_unchanged_objects():
    f = _load("k8s_applicable")
    svc = {"kind": "Service", "metadata": {"name": "a", "namespace": "ns"}}
    dep = {"kind": "Deployment", "metadata": {"name": "a", "namespace": "ns"}}
    other_ns = {"kind": "Deployment", "metadata": {"name": "a", "namespace": "other"}}
    # What k8s_unchanged returns is the live object: matched by kind, namespace and name only.
    live_dep = {**dep, "apiVersion": "apps/v1", "status": {"readyReplicas": 1}}
    assert f.k8s_pending([svc, dep, other_ns], [live_dep]) == [svc, other_ns]
    assert f.k8s_batches([svc, dep], False, [live_dep]) == [[svc]]
    assert f.k8s_batches([svc, dep], True, [live_dep]) == [[svc]]
    # Nothing to apply: no item, so no module run.
    assert f.k8s_batches([svc, dep], False, [svc, live_dep]) == []
    assert f.k8s_pending([svc], None) == [svc] and f.k8s_pending([svc], []) == [svc]
    # A cluster-scoped object has no namespace on either side.
    ns = {"kind": "Namespace", "metadata": {"name": "ns"}}
    assert f.k8s_pending([ns], [{"kind": "Namespace", "metadata": {"name": "ns", "uid": "1"}}]) == []


def test_k8s_applied_adds_the_unchanged_objects_after_the_applied_ones():
    applied = _load("k8s_applicable").k8s_applied
    svc = {"kind": "Service", "metadata": {"name": "a"}}
    dep = {"kind": "Deployment", "metadata": {"name": "a"}, "status": {"readyReplicas": 1}}
    one = {"results": [{"changed": True, "result": {"results": [{"result": svc}]}}]}
    assert applied(one, [dep]) == [svc, dep]
    # Every object unchanged: the apply task had no item.
    assert applied({"results": [], "skipped": True}, [svc, dep]) == [svc, dep]
    assert applied(None, None) == []


def test_k8s_applied_reads_both_result_shapes_and_skips_skipped_items():
    applied = _load("k8s_applicable").k8s_applied
    svc = {"kind": "Service", "metadata": {"name": "a"}}
    dep = {"kind": "Deployment", "metadata": {"name": "a"}, "status": {"readyReplicas": 1}}
    # One module run that applied several objects (kubernetes.core returns result.results) ...
    many = {"results": [{"changed": False, "result": {"results": [{"result": svc}, {"result": dep}]}}]}
    # ... or one run per object (--diff): each item's result is the object.
    one_each = {"results": [{"changed": False, "result": svc}, {"changed": True, "result": dep}]}
    skipped = {"results": [{"skipped": True}], "skipped": True}
    assert applied(many) == [svc, dep]
    assert applied(one_each) == [svc, dep]
    assert applied(skipped) == [] == applied({}) == applied(None)
    # Removed objects come back as {}: nothing to report.
    assert applied({"results": [{"changed": True, "result": {}}]}) == []


@pytest.mark.parametrize("tags,run,skip,expected", [
    (["chatbot"], ["all"], [], True),
    (["chatbot"], ["autoscaling"], [], False),
    (["chatbot"], ["chatbot"], [], True),
    (["cluster", "always"], ["kuberay"], [], True),
    (["cluster", "always"], ["all"], ["always"], False),
    (["chatbot"], ["all"], ["chatbot"], False),
    (["namespace", "kuberay", "ecosystem"], ["ecosystem"], [], True),
    (["loadtest", "never"], ["all"], [], False),
    (["loadtest", "never"], ["loadtest"], [], True),
    (["chatbot"], ["tagged"], [], True),
    (["chatbot"], ["untagged"], [], False),
    ([], ["untagged"], [], True),
    (["mlflow", "ecosystem"], ["all"], ["molecule-notest", "notest"], True),
    (["chatbot"], None, None, True),
])
def test_tags_select_follows_ansible_rules(tags, run, skip, expected):
    assert stack.tags_select(tags, run, skip) is expected


def test_roles_for_tags_keeps_play_order():
    roles = {"cluster": ["cluster", "always"], "namespace": ["namespace", "kuberay"], "chatbot": ["chatbot"],
             "kuberay": ["kuberay", "ecosystem"]}
    assert stack.roles_for_tags(roles, ["all"], []) == list(roles)
    assert stack.roles_for_tags(roles, ["kuberay"], []) == ["cluster", "namespace", "kuberay"]
    assert stack.roles_for_tags(roles, ["all"], ["chatbot"]) == ["cluster", "namespace", "kuberay"]


def test_k8s_preview_names_each_object_and_never_shows_a_secret_value():
    preview = _load("k8s_applicable").k8s_preview
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ai"}, "data": {"A": "1"}}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ai"},
              "data": {"ANTHROPIC_API_KEY": "c2stYW50LXNlY3JldA=="}}
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ai"}}
    assert preview([ns, cm, secret, None]) == [
        "would create Namespace ai", "would create ConfigMap ai/c", "would create Secret ai/s"]
    # Ansible hands the filter str subclasses (templated values): the YAML must still be plain.
    class Tagged(str):
        pass

    secret["data"] = {Tagged("ANTHROPIC_API_KEY"): Tagged("c2stYW50LXNlY3JldA==")}
    full = preview([cm, secret], True)
    assert len(full) == 4 and "A: '1'" in full[1]
    assert "ANTHROPIC_API_KEY: <hidden>" in full[3] and "c2stYW50" not in "".join(full)


# --- k8s_forbidden, k8s_forbidden_reason (plugins/filter/k8s_applicable.py) ---------------

K8S = _load("k8s_applicable")
# What kubernetes.core.k8s_info reported for a ServiceAccount without rights (simulated cluster's
# API server, kubernetes.core 6.2.0): the response body quoted, its quotes escaped.
FORBIDDEN_MSG = (
    "Exception '403\nReason: Forbidden\nHTTP response body: {\"kind\":\"Status\",\"status\":\"Failure\","
    "\"message\":\"apiservices.apiregistration.k8s.io \\\"v1beta1.metrics.k8s.io\\\" is forbidden: "
    "User \\\"system:serviceaccount:ns:deployer\\\" cannot get resource \\\"apiservices\\\" in API group "
    "\\\"apiregistration.k8s.io\\\" at the cluster scope\",\"reason\":\"Forbidden\",\"code\":403}\n' raised"
)


# What kubernetes.core.k8s (apply) reported on kind for a Deployment whose model volume a kubectl patch
# had turned into an emptyDir: a 422 whose field causes say "Forbidden", not a refusal.
INVALID_MSG = (
    'Failed to apply object: {"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":'
    '"Deployment.apps \\"docker-model-runner\\" is invalid: [spec.template.spec.volumes[0].persistentVolumeClaim: '
    'Forbidden: may not specify more than 1 volume type]","reason":"Invalid","details":{"causes":[{"reason":'
    '"FieldValueForbidden","message":"Forbidden: may not specify more than 1 volume type"}]},"code":422}'
)


@pytest.mark.parametrize("result, expected", [
    ({"msg": INVALID_MSG, "reason": "Unprocessable Entity"}, True),
    ({"results": [{"failed": True, "msg": INVALID_MSG}], "msg": "One or more items failed"}, True),
    ({"msg": "Failed to patch object: (422) Reason: Unprocessable Entity"}, True),
    ({"msg": FORBIDDEN_MSG}, False),
    ({"status": 403, "msg": INVALID_MSG}, False),
    ("connection refused", False),
    (None, False),
])
def test_k8s_invalid_tells_an_invalid_object_from_other_failures(result, expected):
    assert K8S.k8s_invalid(result) is expected


@pytest.mark.parametrize("result, expected", [
    ({"msg": FORBIDDEN_MSG}, True),
    ({"msg": "Failed to patch object: (403) Reason: Forbidden"}, True),
    ({"status": 403, "msg": ""}, True),
    ({"msg": "Max retries exceeded with url: /version (Caused by NewConnectionError('Connection refused'))"}, False),
    ({"msg": "Failed to create object: (422) Reason: Unprocessable Entity"}, False),
    ({"msg": INVALID_MSG, "reason": "Unprocessable Entity"}, False),
    ({"msg": INVALID_MSG, "error": 422, "status": 422}, False),
    ("nodes is forbidden: User \"bob\" cannot list resource \"nodes\"", True),
    (None, False),
])
def test_k8s_forbidden_tells_a_refusal_from_other_failures(result, expected):
    assert K8S.k8s_forbidden(result) is expected


def test_k8s_forbidden_reason_is_the_api_servers_sentence_unescaped():
    assert K8S.k8s_forbidden_reason({"msg": FORBIDDEN_MSG}) == (
        'User "system:serviceaccount:ns:deployer" cannot get resource "apiservices" in API group '
        '"apiregistration.k8s.io" at the cluster scope')
    namespaced = 'namespaces "x" is forbidden: User "bob" cannot patch resource "namespaces" in API group "" in the namespace "x"'
    assert K8S.k8s_forbidden_reason(namespaced).endswith('in the namespace "x"')
    assert K8S.k8s_forbidden_reason({"msg": "connection refused"}) == ""
    assert "k8s_forbidden_reason" in K8S.FilterModule().filters()


@pytest.mark.parametrize("msg, reason", [
    ("Failed to get client due to HTTPSConnectionPool(host='127.0.0.1', port=32764): Max retries exceeded with url: "
     "/version (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object>: Failed to establish a new "
     "connection: [Errno 111] Connection refused'))", "connection refused"),
    ("Value of unknown type: <class 'urllib3.exceptions.NewConnectionError'>", "no connection"),
    ("('Connection aborted.', RemoteDisconnected('Remote end closed connection without response'))", "connection reset"),
    ("HTTPSConnectionPool(host='x', port=6443): Read timed out. (read timeout=20)", "timed out"),
    ('"Deployment" "go-backend": Timed out waiting on resource', ""),
    ("Failed to create object: (422) Reason: Unprocessable Entity", ""),
    (FORBIDDEN_MSG, ""),
])
def test_k8s_unreachable_names_why_the_server_did_not_answer(msg, reason):
    assert K8S.k8s_unreachable({"msg": msg}) == reason


def test_a_failed_loop_is_judged_by_its_failed_items():
    loop = {"failed": True, "msg": "One or more items failed", "results": [
        {"failed": False, "msg": ""},
        {"failed": True, "msg": FORBIDDEN_MSG},
    ]}
    assert K8S.k8s_forbidden(loop) and K8S.k8s_forbidden_reason(loop).startswith('User "system:serviceaccount')
    assert K8S.k8s_failed_msg(loop) == FORBIDDEN_MSG
    refused = {"failed": True, "msg": "One or more items failed", "results": [
        {"failed": True, "msg": "Max retries exceeded (Caused by NewConnectionError('... Connection refused'))"}]}
    assert K8S.k8s_unreachable(refused) == "connection refused" and not K8S.k8s_forbidden(refused)
    assert K8S.k8s_failed_msg({"msg": "plain"}) == "plain"


_HPA_SPEC = {"metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                          "target": {"type": "Utilization", "averageUtilization": 70}}}]}


def test_hpa_scale_out_reason_names_the_false_condition():
    hpa = {"spec": _HPA_SPEC, "status": {"conditions": [
        {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
        {"type": "ScalingActive", "status": "False", "reason": "FailedGetResourceMetric",
         "message": "the HPA was unable to compute the replica count: failed to get cpu utilization"}]}}
    reason = stack.hpa_scale_out_reason(hpa)
    assert reason.startswith("ScalingActive is False (FailedGetResourceMetric: the HPA was unable")
    assert "metrics-server" in reason and "{" not in reason


def test_hpa_scale_out_reason_without_a_target():
    hpa = {"status": {"conditions": [{"type": "AbleToScale", "status": "False", "reason": "FailedGetScale",
                                      "message": 'deployments/scale.apps "go-backend" not found'}]}}
    assert stack.hpa_scale_out_reason(hpa) == (
        'AbleToScale is False (FailedGetScale: deployments/scale.apps "go-backend" not found); the HPA cannot read '
        "or change its target's scale (is the Deployment there?)")


def test_hpa_scale_out_reason_gives_the_cpu_against_the_target():
    hpa = {"spec": _HPA_SPEC, "status": {"currentReplicas": 1, "conditions": [
        {"type": "ScalingActive", "status": "True"}], "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 12, "averageValue": "6m"}}}]}}
    reason = stack.hpa_scale_out_reason(hpa)
    assert reason.startswith("the load kept cpu at 12 % of requests, under the 70 % target, with 1 replica(s)")
    assert "autoscaling_loadtest_parallelism" in reason


@pytest.mark.parametrize("hpa", [None, {}, {"status": {}}, {"spec": _HPA_SPEC, "status": {"currentMetrics": None}}])
def test_hpa_scale_out_reason_without_status(hpa):
    assert stack.hpa_scale_out_reason(hpa).startswith("the HPA reports no current metrics yet")


@pytest.mark.parametrize("urls, ports", [
    ([], []),
    (None, []),
    (["http://desktop-model-registry:5000"], [5000]),
    (["https://mirror.example", "http://mirror.example/", "https://m.example:8443"], [443, 80, 8443]),
])
def test_url_ports(urls, ports):
    assert stack.url_ports(urls) == ports


def test_url_ports_refuses_what_is_not_an_http_url():
    with pytest.raises(ValueError, match="not an http"):
        stack.url_ports(["registry.local:5000"])


def test_hpa_sample_reads_replicas_and_cpu_utilisation():
    hpa = {"status": {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 143, "averageValue": "143m"}}}]}}
    assert stack.hpa_sample(hpa, "1767261600.5") == {"time": 1767261600.5, "current": 2, "desired": 3, "cpu": 143}
    # a new HPA has no metrics yet; a missing one (an empty lookup) gives zeros
    assert stack.hpa_sample({"status": {"currentReplicas": 1, "desiredReplicas": 1}}, 1)["cpu"] is None
    assert stack.hpa_sample([], 2) == {"time": 2.0, "current": 0, "desired": 0, "cpu": None}


def test_hpa_samples_table_lines():
    samples = [{"time": 110.0, "current": 1, "desired": 3, "cpu": 180}, {"time": 105.0, "current": 1, "desired": 1, "cpu": None}]
    assert stack.hpa_samples_table(samples, 100) == ["    5.0 s  replicas 1 -> 1  CPU -", "   10.0 s  replicas 1 -> 3  CPU 180 %"]
    assert stack.hpa_samples_table(samples)[0].startswith("    0.0 s") and stack.hpa_samples_table([]) == []


def _pod(name, claim="model-storage", node="worker", phase="Running", labels=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "status": {"phase": phase},
            "spec": {"nodeName": node, "volumes": [{"name": "tmp", "emptyDir": {}},
                                                   {"name": "models", "persistentVolumeClaim": {"claimName": claim}}]}}


def test_claim_users_follow_the_pvc_protection_rule():
    pods = [_pod("runner"), _pod("other-claim", claim="data"), _pod("pending", node=None),
            _pod("done", phase="Succeeded"), _pod("failed", phase="Failed"), _pod("starting", phase="Pending"),
            {"metadata": {"name": "no-volumes"}, "spec": {"nodeName": "worker"}}]
    assert [p["metadata"]["name"] for p in stack.claim_users(pods, "model-storage")] == ["runner", "starting"]
    assert stack.claim_users(None, "model-storage") == []


def test_claim_users_leave_out_the_excluded_labels():
    pods = [_pod("runner", labels={"app": "docker-model-runner", "tier": "x"}), _pod("mine", labels={"app": "mine"}),
            {"metadata": {"name": "bare"}, "spec": {"nodeName": "w", "volumes": [
                {"name": "m", "persistentVolumeClaim": {"claimName": "model-storage"}}]}}]
    names = [p["metadata"]["name"] for p in stack.claim_users(pods, "model-storage", {"app": "docker-model-runner"})]
    assert names == ["mine", "bare"]
    assert len(stack.claim_users(pods, "model-storage", None)) == 3
