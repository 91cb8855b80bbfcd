"""The network_policy role's NetworkPolicies, rendered by tests/render.yml, checked offline.

What they allow is proved with real connections on the kind cluster (molecule/default/verify.yml,
kube-network-policies enforcing); here: which pods each policy selects, and which peers and ports
it opens, for the defaults and for tests/fixtures/nondefault_vars.yml (other names, ports, host mode).
"""

from urllib.parse import urlsplit

import pytest


def selects(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels, matchExpressions In/NotIn/Exists/DoesNotExist) against labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        has, value = e["key"] in labels, labels.get(e["key"])
        op = e["operator"]
        if (op == "In" and value not in e["values"]) or (op == "NotIn" and has and value in e["values"]) \
                or (op == "Exists" and not has) or (op == "DoesNotExist" and has):
            return False
    return True


def policies(r):
    return {p["metadata"]["name"]: p for p in r.of_kind("NetworkPolicy")}


def pod_labels(r):
    """name -> pod template labels of the stack's Deployments and the load test's Job."""
    ns = r.expected("ai_stack_namespace")
    out = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in r.of_kind("Deployment")
           if d["metadata"]["namespace"] == ns}
    job = r.one("Job", r.expected("autoscaling_loadtest_job_name"))
    out[job["metadata"]["name"]] = job["spec"]["template"]["metadata"]["labels"]
    return out


def selecting(r, labels):
    return sorted(n for n, p in policies(r).items() if selects(p["spec"]["podSelector"], labels))


def test_every_ingress_is_denied_unless_allowed(rendered):
    deny = policies(rendered)["default-deny-ingress"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}
    for p in policies(rendered).values():
        assert p["metadata"]["namespace"] == rendered.expected("ai_stack_namespace")


def test_each_workload_has_its_own_policy_for_both_directions(rendered):
    for name, labels in pod_labels(rendered).items():
        own = [n for n in selecting(rendered, labels) if n != "default-deny-ingress"]
        assert own == [name], f"{name} is selected by {own}"
        types = policies(rendered)[name]["spec"]["policyTypes"]
        assert "Egress" in types, name


def test_model_runner_only_from_the_backend_on_its_port(rendered):
    r = rendered
    labels = pod_labels(r)
    runner = policies(r)[r.expected("model_runner_name")]["spec"]
    (rule,) = runner["ingress"]
    assert rule["ports"] == [{"port": r.expected("model_runner_port"), "protocol": "TCP"}]
    allowed = [n for n, lab in labels.items() if any(selects(p["podSelector"], lab) for p in rule["from"])]
    assert allowed == [r.expected("chatbot_backend_name")]
    assert all(set(p) == {"podSelector"} for p in rule["from"]), "no namespace or ipBlock peer"


def test_backend_only_from_the_frontend_and_the_load_test(rendered):
    r = rendered
    (rule,) = policies(r)[r.expected("chatbot_backend_name")]["spec"]["ingress"]
    assert rule["ports"] == [{"port": r.expected("chatbot_backend_port"), "protocol": "TCP"}]
    allowed = sorted(n for n, lab in pod_labels(r).items() if any(selects(p["podSelector"], lab) for p in rule["from"]))
    assert allowed == sorted([r.expected("chatbot_frontend_name"), r.expected("autoscaling_loadtest_job_name")])


def test_frontend_from_the_configured_peers_only(rendered):
    r = rendered
    (rule,) = policies(r)[r.expected("chatbot_frontend_name")]["spec"]["ingress"]
    assert rule["from"] == r.expected("network_policy_frontend_from")
    assert rule["ports"] == [{"port": r.expected("chatbot_frontend_port"), "protocol": "TCP"}]


def test_every_egress_policy_allows_dns_and_little_else(rendered):
    r = rendered
    for name in pod_labels(r):
        egress = policies(r)[name]["spec"]["egress"]
        dns = egress[0]
        assert {"port": 53, "protocol": "UDP"} in dns["ports"] and {"port": 53, "protocol": "TCP"} in dns["ports"]
        assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
        for rule in egress[1:]:
            assert rule.get("ports"), f"{name}: an egress rule without ports opens every port"


def test_backend_reaches_the_runner_in_the_cluster_or_on_the_host(rendered):
    r = rendered
    egress = policies(r)[r.expected("chatbot_backend_name")]["spec"]["egress"]
    port = [{"port": r.expected("model_runner_port"), "protocol": "TCP"}]
    runner_rules = [e for e in egress[1:] if e["ports"] == port]
    assert len(runner_rules) == 1
    if r.expected("model_runner_mode") == "host":
        assert "to" not in runner_rules[0]  # outside the cluster, at an address only the host knows
    else:
        assert runner_rules[0]["to"] == [{"podSelector": {"matchLabels": {
            "app.kubernetes.io/name": r.expected("model_runner_name")}}}]


def test_model_runner_egress_is_the_registry(rendered):
    r = rendered
    registry = policies(r)[r.expected("model_runner_name")]["spec"]["egress"][1]
    assert registry["to"] == [{"ipBlock": {"cidr": c}} for c in r.expected("network_policy_model_registry_cidrs")]
    # HTTPS (Docker Hub), then each registry mirror's own port.
    mirrors = r.expected("model_runner_registry_mirrors")
    ports = list(dict.fromkeys([443] + [urlsplit(m).port or {"http": 80, "https": 443}[urlsplit(m).scheme]
                                        for m in mirrors]))
    assert registry["ports"] == [{"port": p, "protocol": "TCP"} for p in ports]


@pytest.mark.parametrize("labels, expected", [
    ({"app.kubernetes.io/name": "mlflow"}, True),
    ({}, True),
    ({"app.kubernetes.io/name": "go-backend"}, False),
])
def test_other_pods_policy_selects_only_pods_that_are_not_the_stacks(renders, labels, expected):
    r = renders["default"]
    assert selects(policies(r)["other-pods"]["spec"]["podSelector"], labels) is expected
