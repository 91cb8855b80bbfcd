"""Bad input is refused before anything is changed, with a message that names the variable.

Each case runs one role with tests/argspec_play.yml (the variables of site.yml's one
play, tests/tasks/site_vars.yml) against a kubeconfig whose API server is
https://127.0.0.1:1, where nothing listens: a run that gets past the role's input
validation fails at its first Kubernetes call with a connection error. The failed task
in the JSON report tells the two apart: the argument spec check ("Validating arguments
against arg spec") or the role's "validate |" asserts, versus anything later. The
control cases prove the harness sees the difference.
"""

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ai_stack_testlib import PlaybookResult, TaskResult, new_api_key, rendered_roles, run_playbook
from ai_stack_testlib import kubernetes_calls as calls_to_the_api

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
    Case("placeholder-angle", "config", {"config_anthropic_api_key": "<your-api-key>"}, VALIDATE,
         "config_anthropic_api_key"),
    Case("placeholder-shell", "config", {"config_anthropic_api_key": "${ANTHROPIC_API_KEY}"}, VALIDATE,
         "config_anthropic_api_key"),
    Case("min-workers-negative", "cluster", {"cluster_min_workers": -1}, VALIDATE, "cluster_min_workers"),
    Case("kuberay-operator-not-the-chart", "kuberay", {"kuberay_operator_image": "quay.io/kuberay/operator:v1.4.0"},
         VALIDATE, "kuberay_operator_image"),
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
    # Hardening: no quiet downgrade of Pod Security, no root, NetworkPolicy input that makes sense.
    Case(
        "extra-label-lowers-pod-security",
        "namespace",
        {"namespace_extra_labels": {"pod-security.kubernetes.io/enforce": "privileged"}},
        VALIDATE,
        "namespace_extra_labels",
    ),
    Case("backend-as-root", "chatbot", {"chatbot_run_as_user": 0}, VALIDATE, "chatbot_run_as_user"),
    Case("runner-as-root", "model_runner", {"model_runner_run_as_user": 0}, VALIDATE, "model_runner_run_as_user"),
    Case("runner-user-name", "model_runner", {"model_runner_run_as_user": "modelrunner"}, ARGSPEC,
         "model_runner_run_as_user"),
    Case("writable-relative", "chatbot", {"chatbot_frontend_writable_paths": ["var/cache/nginx"]}, VALIDATE,
         "chatbot_frontend_writable_paths"),
    Case("runner-writable-relative", "model_runner", {"model_runner_writable_paths": ["tmp"]}, VALIDATE,
         "model_runner_writable_paths"),
    Case("runner-workdir-read-only", "model_runner", {"model_runner_working_dir": "/app"}, VALIDATE,
         "model_runner_working_dir"),
    Case("runner-mirror-no-scheme", "model_runner", {"model_runner_registry_mirrors": ["registry.local:5000"]}, VALIDATE,
         "model_runner_registry_mirrors"),
    Case("registry-any", "network_policy", {"network_policy_model_registry_cidrs": ["any"]}, VALIDATE,
         "network_policy_model_registry_cidrs"),
    Case("registry-port-70000", "network_policy", {"network_policy_model_registry_ports": [70000]}, VALIDATE,
         "network_policy_model_registry_ports"),
    Case("frontend-from-not-a-peer", "network_policy", {"network_policy_frontend_from": [{"namespace": "ingress"}]},
         VALIDATE, "network_policy_frontend_from"),
    Case("network-policy-state", "network_policy", {"network_policy_state": "enabled"}, ARGSPEC,
         "network_policy_state"),
    # The ML ecosystem roles.
    Case("mlflow-port-0", "mlflow", {"mlflow_port": 0}, VALIDATE, "mlflow_port"),
    Case("mlflow-storage-5GB", "mlflow", {"mlflow_storage_size": "5GB"}, VALIDATE, "mlflow_storage_size"),
    Case("kserve-version-latest", "kserve", {"kserve_version": "latest"}, VALIDATE, "kserve_version"),
    Case("kserve-sample-user-name", "kserve", {"kserve_sample_run_as_user": "ray"}, ARGSPEC, "kserve_sample_run_as_user"),
    Case("kubeflow-version-master", "kubeflow", {"kubeflow_version": "master"}, VALIDATE, "kubeflow_version"),
    Case(
        "ray-submitter-memory-200MB",
        "kuberay",
        {"kuberay_submitter_resources": {"requests": {"cpu": "500m", "memory": "200MB"},
                                         "limits": {"cpu": "1", "memory": "1Gi"}}},
        VALIDATE,
        "kuberay_submitter_resources",
    ),
]

CHATBOT_NO_DOCKER = {"chatbot_image_load_enabled": False, "config_secret_version": "1"}

# Inputs that must get past validation: they fail only at the (unreachable) API server.
# (The ML ecosystem roles are left out: after validation they fetch manifests or run helm first.)
GOOD = [
    Case(
        "empty-key-allowed",
        "config",
        {"config_anthropic_api_key": "", "config_allow_placeholder_secret": True},
        CLUSTER,
    ),
    # (The chatbot's image check runs docker before any Kubernetes call: no images to load here; its
    # read of the Secret's version is no_log, so the first call should be the apply that says why it failed.)
    *[Case(f"defaults-{role}", role, CHATBOT_NO_DOCKER if role == "chatbot" else {}, CLUSTER)
      for role in ["cluster", *rendered_roles()]],
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
    run: PlaybookResult
    api_key: str

    @property
    def failure(self) -> TaskResult:
        """The task that stopped the run (the last one that failed)."""
        failure = self.run.failure()
        assert failure is not None, f"no task failed:\n{self.run.describe()}"
        return failure

    @property
    def message(self) -> str:
        """The failed task's message; for a no_log task (censored result), its fail_msg as written."""
        if self.failure.censored:
            return str(source_task(self.failure).get("ansible.builtin.assert", {}).get("fail_msg", ""))
        return self.failure.msg

    @property
    def assertion(self) -> str:
        """For a failed assert: the condition that was false; for a censored one, its conditions as written."""
        if self.failure.censored:
            return json.dumps(source_task(self.failure).get("ansible.builtin.assert", {}).get("that", ""))
        return str(self.failure.result.get("assertion", ""))


def source_task(result: TaskResult) -> dict:
    """The task as its file has it, found from the "file:line" the JSON report gives."""
    path, _, line = result.path.rpartition(":")

    def find(sequence):
        for node in sequence.value if isinstance(sequence, yaml.SequenceNode) else []:
            if node.start_mark.line + 1 == int(line):
                return node
            for key, value in node.value if isinstance(node, yaml.MappingNode) else []:
                if key.value in ("block", "rescue", "always") and (found := find(value)) is not None:
                    return found
        return None

    node = find(yaml.compose(Path(path).read_text()))
    assert node is not None, f"no task at {result.path}"
    return yaml.safe_load(yaml.serialize(node))


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
    nowhere = {
        "ai_stack_kubeconfig": str(kubeconfig),
        "ai_stack_context": "nowhere",
        "cluster_expected_context": "nowhere",
    }
    args += ["-e", json.dumps(nowhere)]
    if case.id.endswith("-vvv"):
        args.append("-vvv")
    result = run_playbook(
        "tests/argspec_play.yml",
        *args,
        api_key=api_key,
        extra_env={"K8S_AUTH_KUBECONFIG": str(kubeconfig), "K8S_AUTH_CONTEXT": "nowhere"},
        timeout=180,
    )
    return Outcome(result, api_key)


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


def stage_of(o: Outcome) -> str:
    if o.failure.name.startswith("Validating arguments against arg spec"):
        return ARGSPEC
    if o.failure.name.startswith("validate |"):
        return VALIDATE
    return CLUSTER


def item_messages(result: TaskResult) -> str:
    """The messages of a task's items (a task that applies a list of objects loops over batches)."""
    return " ".join(str(i.get("msg", "")) for i in result.items())


def describe(o: Outcome) -> str:
    return o.run.describe()


def kubernetes_calls(o: Outcome) -> list[str]:
    """The tasks that talked to the API server: kubernetes.core modules, and kubernetes.core.k8s lookups."""
    return [r.task for r in calls_to_the_api(o.run)]


def pinpoints(o: Outcome, var: str) -> bool:
    """The failure is about ``var``: the assert's failed condition names it, or the message names
    no other variable of the role (a message that lists every variable would prove little)."""
    if var in o.assertion:
        return True
    return set(re.findall(rf"\b{o.failure.role}_\w+", o.message)) == {var}


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_bad_input_is_refused_by_validation(case, outcomes):
    o = outcomes[case.id]
    assert o.run.rc != 0, describe(o)
    assert o.failure.role == case.role, describe(o)
    assert stage_of(o) == case.stage, describe(o)
    assert case.names in o.message, f"the message does not name {case.names}:\n{describe(o)}"
    if case.stage == VALIDATE:
        assert pinpoints(o, case.names), f"the failure is not about {case.names} alone:\n{describe(o)}"
    assert kubernetes_calls(o) == [], "a Kubernetes call was made before the input was refused"
    assert o.run.stats["localhost"]["changed"] == 0, describe(o)


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_good_input_gets_past_validation(case, outcomes):
    """Role defaults (and an empty key that is allowed on purpose) pass validation;
    the run then fails only because the API server does not answer."""
    o = outcomes[case.id]
    assert o.run.rc != 0, describe(o)
    # A rescue may hand the failure to the ai_stack role's api_error, which says it in one line.
    explained = o.failure.role == "ai_stack" and o.failure.name == "API error | Say that the API server stopped answering"
    assert o.failure.role == case.role or explained, describe(o)
    assert stage_of(o) == CLUSTER, describe(o)
    # The first failure is a Kubernetes call that found no API server: a kubernetes.core module, or
    # (the controller is this machine) a kubernetes.core.k8s lookup.
    first = o.run.failed_tasks()[0]
    assert first.role == case.role, describe(o)
    assert first.task in kubernetes_calls(o), describe(o)
    assert CONNECTION_ERROR.search(item_messages(first)), describe(o)
    if explained:
        assert "(connection refused)" in o.failure.msg and "\n" not in o.failure.msg.strip(), describe(o)
    else:
        assert CONNECTION_ERROR.search(item_messages(o.failure)), describe(o)
    assert {r.role for r in o.run.failed_tasks()} <= {case.role, "ai_stack"}, describe(o)
    ran = [r for r in o.run.results() if r.role == case.role and not r.skipped]
    assert [r for r in ran if r.name.startswith("Validating arguments against arg spec")], "no argument spec check ran"
    assert [r for r in ran if r.name.startswith("validate |")], "the role's validate tasks did not run"


@pytest.mark.parametrize("case", LEAK, ids=lambda c: c.id)
def test_api_key_never_printed(case, outcomes):
    o = outcomes[case.id]
    assert o.run.rc != 0 and stage_of(o) == case.stage, describe(o)
    assert case.names in o.message, describe(o)
    # The whole raw output (stdout and stderr, the JSON report included), not only the report.
    assert o.api_key not in o.run.output
    # Nor a recognisable part of it.
    assert o.api_key[-16:] not in o.run.output


def specs_check(tmp_path, owners: list[dict]) -> PlaybookResult:
    """ai_stack's validate_specs for namespace and autoscaling in a play that knows their defaults (imported, as
    playbooks/cleanup.yml imports each role's validate tasks) and the given imports of other roles. Autoscaling is
    the loop's last item: a loop whose last item fails fails as a whole, which the check must say in one line too."""
    play = [{
        "name": "The argument-spec check of a play that does not run every role",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            *owners,
            {"name": "Know the namespace role's defaults", "when": False,
             "ansible.builtin.import_role": {"name": "namespace", "tasks_from": "validate"}},
            {"name": "Know autoscaling's defaults", "when": False,
             "ansible.builtin.import_role": {"name": "autoscaling", "tasks_from": "validate"}},
            {"name": "Check the specs", "ansible.builtin.include_role": {"name": "ai_stack", "tasks_from": "validate_specs"},
             "vars": {"ai_stack_validate_roles": ["namespace", "autoscaling"]}},
        ],
    }]
    path = tmp_path / "specs_play.yml"
    path.write_text(yaml.safe_dump(play))
    return run_playbook(str(path), api_key=new_api_key(), timeout=120)


def test_a_default_naming_an_unknown_variable_is_refused(tmp_path):
    """Autoscaling's defaults derive its targets from chatbot_backend_name and model_runner_name. A play that
    knows autoscaling's defaults and not the owners' cannot check autoscaling's spec: that stops the run, in one
    line that names the variable, instead of passing unchecked."""
    run = specs_check(tmp_path, [])
    assert run.rc != 0, run.describe()
    message = run.failure_message()
    assert message.startswith("Input refused before any change. autoscaling: ") and "\n" not in message.strip(), message
    assert "'chatbot_backend_name' is undefined" in message or "'model_runner_name' is undefined" in message, message


def test_cleanup_knows_the_names_autoscaling_derives_from(tmp_path):
    """playbooks/cleanup.yml's imports of the owners' `names` entry points make the same check pass."""
    cleanup = yaml.safe_load((Path(__file__).parent.parent / "playbooks" / "cleanup.yml").read_text())
    owners = [t for t in cleanup[0]["pre_tasks"] if t.get("ansible.builtin.import_role", {}).get("tasks_from") == "names"]
    assert {t["ansible.builtin.import_role"]["name"] for t in owners} == {"chatbot", "model_runner"}, owners
    run = specs_check(tmp_path, owners)
    assert run.rc == 0, run.describe()
    assert run.stats["localhost"]["failures"] == 0 and run.stats["localhost"]["changed"] == 0, run.describe()
