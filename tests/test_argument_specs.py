"""Bad input is refused before anything is changed, with a message that names the variable.

Each case runs one role with tests/argspec_play.yml against a kubeconfig whose
API server is https://127.0.0.1:1, where nothing listens: a run that gets past
the role's input validation fails at its first Kubernetes call with a connection
error. The failing task tells the two apart: the argument spec check
("Validating arguments against arg spec") or the role's "validate |" asserts,
versus anything later. The control cases prove the harness sees the difference.
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from ai_stack_testlib import new_api_key, rendered_roles, run_playbook

ARGSPEC = "argspec"  # refused by meta/argument_specs.yml
VALIDATE = "validate"  # refused by the role's tasks/validate.yml
CLUSTER = "cluster"  # got past validation, failed at the first Kubernetes call

MR_RESOURCES = {"requests": {"cpu": "1000m", "memory": "4Gi"}, "limits": {"cpu": "4000m", "memory": "8Gi"}}


@dataclass(frozen=True)
class Case:
    id: str
    role: str
    vars: dict
    stage: str
    names: str = ""  # the variable the message must name


BAD = [
    Case("replicas-wrong-type", "model_runner", {"model_runner_replicas": "three"}, ARGSPEC, "model_runner_replicas"),
    Case("replicas-negative", "model_runner", {"model_runner_replicas": -1}, VALIDATE, "model_runner_replicas"),
    Case(
        "backend-replicas-negative", "chatbot", {"chatbot_backend_replicas": -2}, VALIDATE, "chatbot_backend_replicas"
    ),
    Case(
        "memory-4GB",
        "model_runner",
        {"model_runner_resources": {**MR_RESOURCES, "requests": {"cpu": "1000m", "memory": "4GB"}}},
        VALIDATE,
        "model_runner_resources",
    ),
    Case(
        "backend-memory-64MB",
        "chatbot",
        {
            "chatbot_backend_resources": {
                "requests": {"cpu": "100m", "memory": "64MB"},
                "limits": {"cpu": "1", "memory": "1Gi"},
            }
        },
        VALIDATE,
        "chatbot_backend_resources",
    ),
    Case("storage-5GB", "storage", {"storage_size": "5GB"}, VALIDATE, "storage_size"),
    Case("mode-docker", "model_runner", {"model_runner_mode": "docker"}, ARGSPEC, "model_runner_mode"),
    Case(
        "pod-security-level",
        "namespace",
        {"namespace_pod_security": {"enforce": "strict", "audit": "restricted", "warn": "baseline"}},
        ARGSPEC,
        "namespace_pod_security",
    ),
    Case(
        "pod-security-version",
        "namespace",
        {"namespace_pod_security_version": "1.34"},
        VALIDATE,
        "namespace_pod_security_version",
    ),
    Case(
        "image-latest",
        "model_runner",
        {"model_runner_image": "docker/model-runner:latest"},
        VALIDATE,
        "model_runner_image",
    ),
    Case(
        "image-untagged",
        "model_runner",
        {"model_runner_prepull_image": "curlimages/curl"},
        VALIDATE,
        "model_runner_prepull_image",
    ),
    Case(
        "host-address-ip",
        "model_runner",
        {"model_runner_mode": "host", "model_runner_host_address": "192.168.65.254"},
        VALIDATE,
        "model_runner_host_address",
    ),
    Case("runner-port-70000", "model_runner", {"model_runner_port": 70000}, VALIDATE, "model_runner_port"),
    Case("backend-port-70000", "chatbot", {"chatbot_backend_port": 70000}, VALIDATE, "chatbot_backend_port"),
    Case("dmr-port-70000", "config", {"config_dmr_port": 70000}, VALIDATE, "config_dmr_port"),
    Case(
        "llm-url-no-scheme",
        "chatbot",
        {"chatbot_backend_llm_url": "docker-model-runner:12434"},
        VALIDATE,
        "chatbot_backend_llm_url",
    ),
    Case("access-mode", "storage", {"storage_access_modes": ["ReadWriteSometimes"]}, ARGSPEC, "storage_access_modes"),
    Case(
        "placeholder-key",
        "config",
        {"config_anthropic_api_key": "your-api-key-here"},
        VALIDATE,
        "config_anthropic_api_key",
    ),
    Case(
        "placeholder-key-case",
        "config",
        {"config_anthropic_api_key": "  ChangeMe "},
        VALIDATE,
        "config_anthropic_api_key",
    ),
    Case("empty-key", "config", {"config_anthropic_api_key": ""}, VALIDATE, "config_anthropic_api_key"),
    Case("min-workers-negative", "cluster", {"cluster_min_workers": -1}, VALIDATE, "cluster_min_workers"),
    Case(
        "server-version",
        "cluster",
        {"cluster_min_server_version": "one.thirty"},
        VALIDATE,
        "cluster_min_server_version",
    ),
    Case("namespace-name", "namespace", {"namespace_name": "Bad_Name"}, VALIDATE, "namespace_name"),
    Case(
        "hpa-min-above-max",
        "autoscaling",
        {"autoscaling_backend_min_replicas": 6},
        VALIDATE,
        "autoscaling_backend_min_replicas",
    ),
    Case(
        "hpa-image-latest",
        "autoscaling",
        {"autoscaling_metrics_server_image": "registry.k8s.io/metrics-server/metrics-server:latest"},
        VALIDATE,
        "autoscaling_metrics_server_image",
    ),
    Case(
        "manual-replicas-negative",
        "autoscaling",
        {"autoscaling_manual_replicas": {"go-backend": -1}},
        VALIDATE,
        "autoscaling_manual_replicas",
    ),
]

# Inputs that must get past validation: they fail only at the (unreachable) API server.
# (The ML ecosystem roles are left out: after validation they fetch manifests or run helm first.)
GOOD = [
    Case(
        "empty-key-allowed",
        "config",
        {"config_anthropic_api_key": "", "config_allow_placeholder_secret": True},
        CLUSTER,
    ),
    *[Case(f"defaults-{role}", role, {}, CLUSTER) for role in ["cluster", *rendered_roles()]],
]

# The secret must not appear in the output when validation fails near it.
LEAK = [
    Case(f"leak-{port_id}{verbosity}", "config", {"config_dmr_port": port}, stage, "config_dmr_port")
    for port_id, port, stage in (("port-not-int", "twelve", ARGSPEC), ("port-70000", 70000, VALIDATE))
    for verbosity in ("", "-vvv")
]

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}
users:
  - name: nobody
    user: {token: not-a-token}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
"""

CONNECTION_ERROR = re.compile(r"Connection refused|Max retries exceeded|Failed to establish a new connection")


@dataclass
class Outcome:
    rc: int
    output: str
    failed_task: str  # "role : task name" of the last failure
    failure: str  # what Ansible printed for that task
    api_key: str

    @property
    def message(self) -> str:
        """The error message of the failed task (the [ERROR] paragraph before its Origin)."""
        m = re.search(r"(?ms)^\[ERROR\]: (.*?)^Origin:", self.failure)
        return m.group(1) if m else ""

    @property
    def assertion(self) -> str:
        """For a failed assert: the condition that was false (absent when the result is censored)."""
        m = re.search(r"(?m)^    assertion: (.*(?:\n        .*)*)", self.failure)
        return m.group(1) if m else ""


def parse(output: str) -> tuple[str, str]:
    """The task header and output block of the last task that failed (fatal)."""
    blocks = re.split(r"(?m)^(?=TASK \[|PLAY RECAP)", output)
    failed = [b for b in blocks if b.startswith("TASK [") and re.search(r"(?m)^fatal: ", b)]
    if not failed:
        return "", ""
    block = failed[-1]
    return re.match(r"TASK \[(.*?)\] \**", block).group(1), block


def run_case(case: Case, tmp_path) -> Outcome:
    api_key = new_api_key()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    varsfile = tmp_path / f"{case.id}.json"
    case_vars = dict(case.vars)
    if case.id.startswith("leak-"):
        case_vars["config_anthropic_api_key"] = api_key  # a real-looking key, passed as an extra var
    varsfile.write_text(json.dumps(case_vars))
    args = ["-e", f"role_under_test={case.role}", "-e", f"@{varsfile}"]
    args += ["-e", json.dumps({"ai_stack_kubeconfig": str(kubeconfig), "ai_stack_context": "nowhere"})]
    if case.id.endswith("-vvv"):
        args.append("-vvv")
    result = run_playbook(
        "tests/argspec_play.yml",
        *args,
        api_key=api_key,
        extra_env={"K8S_AUTH_KUBECONFIG": str(kubeconfig), "K8S_AUTH_CONTEXT": "nowhere"},
        timeout=180,
    )
    output = result.stdout + result.stderr
    task, block = parse(result.stdout)
    return Outcome(result.returncode, output, task, block, api_key)


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory):
    """The outcome of every selected case; the runs go in parallel (a few at a time, they are CPU bound)."""
    selected = {
        item.callspec.params["case"].id
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    }
    cases = [c for c in BAD + GOOD + LEAK if c.id in selected]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {c.id: pool.submit(run_case, c, tmp_path_factory.mktemp(c.id)) for c in cases}
        return {cid: f.result() for cid, f in futures.items()}


def stage_of(outcome: Outcome) -> str:
    task = outcome.failed_task.split(" : ", 1)[-1]
    if task.startswith("Validating arguments against arg spec"):
        return ARGSPEC
    if task.startswith("validate |"):
        return VALIDATE
    return CLUSTER


def describe(o: Outcome) -> str:
    return f"rc={o.rc}, failed task {o.failed_task!r}\n{o.output[-3000:]}"


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_bad_input_is_refused_by_validation(case, outcomes):
    o = outcomes[case.id]
    assert o.rc != 0, describe(o)
    assert o.failed_task.startswith(f"{case.role} : "), describe(o)
    assert stage_of(o) == case.stage, describe(o)
    # The message names the variable; for an assert, the condition that failed is about it too
    # (model_runner's message lists all its variables, so that alone would prove little).
    assert case.names in o.message, f"the message does not name {case.names}:\n{o.failure}"
    if case.stage == VALIDATE and "censored" not in o.failure:
        assert case.names in o.assertion, f"the failed condition is not about {case.names}:\n{o.failure}"
    assert not CONNECTION_ERROR.search(o.output), "a Kubernetes call was made before the input was refused"


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_good_input_gets_past_validation(case, outcomes):
    """Role defaults (and an empty key that is allowed on purpose) pass validation;
    the run then fails only because the API server does not answer."""
    o = outcomes[case.id]
    assert o.rc != 0, describe(o)
    assert o.failed_task.startswith(f"{case.role} : "), describe(o)
    assert stage_of(o) == CLUSTER, describe(o)
    assert CONNECTION_ERROR.search(o.failure), describe(o)
    assert re.search(r"(?m)^TASK \[\w+ : validate \|", o.output), "the role's validate tasks did not run"
    assert re.search(r"(?m)^TASK \[\w+ : Validating arguments against arg spec", o.output)


@pytest.mark.parametrize("case", LEAK, ids=lambda c: c.id)
def test_api_key_never_printed(case, outcomes):
    o = outcomes[case.id]
    assert o.rc != 0 and stage_of(o) == case.stage, describe(o)
    assert case.names in o.message, describe(o)
    assert o.api_key not in o.output
    # Nor a recognisable part of it.
    assert o.api_key[-16:] not in o.output
