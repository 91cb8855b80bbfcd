"""Pod Security `restricted`, judged by the real API server's PodSecurity admission.

Every pod the core stack's roles render (the Deployments' and the load test Job's templates, as
tests/render.yml renders them with the defaults and with tests/fixtures/nondefault_vars.yml) is
created with a server-side dry run, as a Pod, in a namespace that enforces and warns `restricted`:
admission must accept each one with no warning, and the workloads themselves must apply without
a PodSecurity warning. A deliberately bad pod must be refused, so the test can fail. Relies on the
simulated cluster only for being an API server: no pod runs (dry runs).
"""

import subprocess

import pytest
import yaml
from ai_stack_testlib import NONDEFAULT_VARS_FILE, cluster_env, render

POD_KINDS = ("Deployment", "Job")


def kubectl(*args, stdin: str = "") -> subprocess.CompletedProcess:
    env = cluster_env()
    return subprocess.run(
        ["kubectl", f"--kubeconfig={env['K8S_AUTH_KUBECONFIG']}", f"--context={env['K8S_AUTH_CONTEXT']}", *args],
        input=stdin, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module", params=["default", "nondefault"])
def rendered(request, tmp_path_factory):
    vars_file = NONDEFAULT_VARS_FILE if request.param == "nondefault" else None
    return render(tmp_path_factory.mktemp(f"psa-{request.param}"), scenario=request.param, vars_file=vars_file)


@pytest.fixture()
def restricted_namespace(temp_namespace):
    r = kubectl("label", "namespace", temp_namespace, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/warn=restricted", "pod-security.kubernetes.io/enforce-version=latest")
    assert r.returncode == 0, r.stderr
    return temp_namespace


def in_namespace(obj: dict, ns: str) -> dict:
    obj = yaml.safe_load(yaml.safe_dump(obj))
    obj["metadata"]["namespace"] = ns
    return obj


def workloads(rendered) -> list[dict]:
    stack_ns = rendered.expected("ai_stack_namespace")
    return [o for o in rendered.objects if o["kind"] in POD_KINDS and o["metadata"].get("namespace") == stack_ns]


def test_every_pod_of_the_stack_is_admitted_under_restricted_without_warnings(rendered, restricted_namespace):
    ns = restricted_namespace
    objs = workloads(rendered)
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == ["Deployment", "Job"], kinds
    # The pods name their own ServiceAccounts, which must exist for admission.
    accounts = [in_namespace(o, ns) for o in rendered.of_kind("ServiceAccount")]
    assert accounts, "the roles render no ServiceAccount"
    r = kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(accounts))
    assert r.returncode == 0, r.stderr
    for obj in objs:
        name = obj["metadata"]["name"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
               "spec": obj["spec"]["template"]["spec"]}
        r = kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod))
        assert r.returncode == 0, f"{obj['kind']} {name}: {r.stderr}"
        assert "Warning" not in r.stderr, f"{obj['kind']} {name}: {r.stderr}"
        r = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(in_namespace(obj, ns)))
        assert r.returncode == 0 and "Warning" not in r.stderr, f"{obj['kind']} {name}: {r.stderr}"


def test_a_pod_that_breaks_restricted_is_refused(restricted_namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": restricted_namespace},
           "spec": {"containers": [{"name": "c", "image": "busybox:1.37.0"}]}}
    r = kubectl("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod))
    assert r.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in r.stderr, r.stderr
    for missing in ("allowPrivilegeEscalation", "capabilities", "runAsNonRoot", "seccompProfile"):
        assert missing in r.stderr, r.stderr
