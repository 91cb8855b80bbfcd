"""Shared helpers of the whole test suite (offline tests and tests/integration).

- ``run_playbook``: the one way the tests run ansible-playbook. It runs with the
  ``ansible.posix.json`` stdout callback and returns a ``PlaybookResult``: rc, the
  parsed report (plays -> tasks -> host results, and per-host stats) and the raw
  output (for secret-leak searches, which must look at everything printed).
- ``new_api_key``: the one test API key generator.
- ``cluster_env``: the test cluster's kubeconfig and context (integration tests).
- ``render`` / ``Rendered``: the roles' manifests rendered offline by tests/render.yml.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
ROLES_DIR = ROOT / "roles"
GROUP_VARS_DIR = ROOT / "group_vars" / "all"
_VENV_BIN = ROOT / ".venv" / "bin"
BIN = _VENV_BIN if (_VENV_BIN / "ansible-playbook").exists() else Path(sys.executable).parent
NONDEFAULT_VARS_FILE = TESTS / "fixtures" / "nondefault_vars.yml"
# tests/render.yml runs with this as its only configured collection path: a stand-in
# kubernetes.core (meta/runtime.yml only) that routes k8s_info to tests/action_plugins.
RENDER_COLLECTIONS = TESTS / "render_collections"

# Variables a developer's shell may carry that would point a run at a real cluster.
_SCRUBBED_ENV = ("KUBECONFIG", "K8S_AUTH_KUBECONFIG", "K8S_AUTH_CONTEXT", "K8S_AUTH_HOST", "ANSIBLE_INVENTORY")


def new_api_key() -> str:
    """A random, real-looking API key, so that a leak can be searched for in the output."""
    return "sk-ant-test-" + secrets.token_hex(20)


def cluster_env() -> dict:
    """K8S_AUTH_KUBECONFIG and K8S_AUTH_CONTEXT of the integration tests' cluster (`make cluster-up`);
    `make integration` sets both, otherwise the simulated cluster's defaults."""
    return {
        "K8S_AUTH_KUBECONFIG": os.environ.get("K8S_AUTH_KUBECONFIG", str(ROOT / ".testcluster" / "kubeconfig")),
        "K8S_AUTH_CONTEXT": os.environ.get("K8S_AUTH_CONTEXT", "kwok-desktop-sim"),
    }


def role_names() -> list[str]:
    return sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def k8s_lookup_tasks() -> set[str]:
    """"role : name" of every role task that reads the cluster with a kubernetes.core.k8s lookup, or
    dry-runs an apply with the project's k8s_unchanged lookup, in its arguments, its `loop` or its `when`
    (on this machine the roles read that way instead of a module run).
    Such a task talks to the API server whatever its action, and even when the lookup in its `when`
    makes it skip."""
    found = set()
    for path in sorted(ROLES_DIR.glob("*/tasks/*.yml")):
        for task in flat_tasks(load_yaml(path)):
            text = yaml.safe_dump(task, width=10000)
            if "block" not in task and ("'kubernetes.core.k8s'" in text or "'k8s_unchanged'" in text):
                found.add(f"{path.parts[-3]} : {task['name']}")
    return found


def kubernetes_calls(result) -> list:
    """The results of the tasks that talked to the API server: kubernetes.core modules that ran, and
    the tasks that read with a lookup (k8s_lookup_tasks)."""
    lookups = k8s_lookup_tasks()
    return [r for r in result.results() if (r.action.startswith("kubernetes.core.") and not r.skipped) or r.task in lookups]


def flat_tasks(tasks) -> list[dict]:
    """A task list with the tasks of every block, rescue and always section in line."""
    out = []
    for task in tasks or []:
        out.append(task)
        for section in ("block", "rescue", "always"):
            out += flat_tasks(task.get(section))
    return out


def render_vars() -> dict:
    """The play variables of tests/render.yml."""
    return load_yaml(TESTS / "render.yml")[0]["vars"]


def rendered_roles() -> list[str]:
    """The roles tests/render.yml renders (its play variable render_roles)."""
    return list(render_vars()["render_roles"])


def group_vars() -> dict:
    merged: dict = {}
    for path in sorted(GROUP_VARS_DIR.glob("*.yml")):
        merged.update(load_yaml(path) or {})
    return merged


# --- ansible-playbook runs ----------------------------------------------------------------


def ansible_env(api_key: str, extra: dict | None = None) -> dict:
    """The environment of a run: the project's ansible.cfg, the JSON stdout callback, no
    ANSIBLE_* or cluster settings from the caller's shell; ``extra`` last."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV and not k.startswith("ANSIBLE_")}
    env.update(
        {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
            # One line: the report stays parseable when -v output goes to stdout too.
            "ANSIBLE_JSON_INDENT": "0",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANTHROPIC_API_KEY": api_key,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


@dataclass
class TaskResult:
    """One host's result of one task, as the ansible.posix.json callback reported it."""

    play: str
    task: str  # "role : task name" for a role's task
    path: str  # "/abs/file.yml:line" of the task
    host: str
    result: dict

    @property
    def name(self) -> str:
        """The task name without its role prefix."""
        return self.task.split(" : ", 1)[-1]

    @property
    def role(self) -> str:
        return self.task.split(" : ", 1)[0] if " : " in self.task else ""

    @property
    def action(self) -> str:
        return self.result.get("action", "")

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed"))

    @property
    def skipped(self) -> bool:
        return bool(self.result.get("skipped"))

    @property
    def changed(self) -> bool:
        return bool(self.result.get("changed"))

    @property
    def censored(self) -> bool:
        return "censored" in self.result

    @property
    def msg(self) -> str:
        msg = self.result.get("msg", "")
        return msg if isinstance(msg, str) else json.dumps(msg)

    def items(self) -> list[dict]:
        """The per-item results of a looped task (its one result otherwise)."""
        return list(self.result["results"]) if isinstance(self.result.get("results"), list) else [self.result]


@dataclass
class PlaybookResult:
    """An ansible-playbook run: rc, the JSON report (None if it printed none) and the raw output."""

    args: list[str]
    rc: int
    stdout: str
    stderr: str
    report: dict | None

    @property
    def output(self) -> str:
        """Everything the run printed (stdout + stderr): what a secret-leak check must search."""
        return self.stdout + self.stderr

    @property
    def plays(self) -> list[dict]:
        return (self.report or {}).get("plays", [])

    @property
    def stats(self) -> dict:
        """{host: {ok, changed, failures, unreachable, skipped, rescued, ignored}}."""
        return (self.report or {}).get("stats", {})

    @property
    def changed(self) -> bool:
        """Some host reported a change (in check mode: would change)."""
        return any(s.get("changed", 0) > 0 for s in self.stats.values())

    def results(self) -> list[TaskResult]:
        """Every task result of every host, in the order the tasks started."""
        return [
            TaskResult(play["play"]["name"], task["task"]["name"], task["task"]["path"], host, result)
            for play in self.plays
            for task in play["tasks"]
            for host, result in task["hosts"].items()
        ]

    def task_results(self, name: str) -> list[TaskResult]:
        """The results of the tasks called ``name`` (with or without the "role : " prefix)."""
        return [r for r in self.results() if name in (r.task, r.name)]

    def ran(self, name: str) -> bool:
        """A task called ``name`` ran (was not skipped) on some host."""
        return any(not r.skipped for r in self.task_results(name))

    def failed_tasks(self) -> list[TaskResult]:
        """Results with failed: true, in order. Failures that a rescue handled or ignore_errors
        ignored are included (the stats count them as rescued/ignored)."""
        return [r for r in self.results() if r.failed or r.result.get("unreachable")]

    def failure(self) -> TaskResult | None:
        """The last failed task: the one that stopped the run when rc != 0."""
        failed = self.failed_tasks()
        return failed[-1] if failed else None

    def failure_message(self) -> str:
        """The msg of the last failed task ("" if nothing failed)."""
        failure = self.failure()
        return failure.msg if failure else ""

    def describe(self, tail: int = 3000) -> str:
        """For assertion messages: rc, the failed tasks with their messages, and stderr."""
        lines = [f"ansible-playbook {' '.join(self.args)}: rc={self.rc}"]
        if self.report is None:
            lines.append("no JSON report; stdout:\n" + self.stdout[-tail:])
        for r in self.failed_tasks():
            lines.append(f"failed: [{r.host}] {r.task} ({r.path}): {r.msg[:1500]}")
        lines.append(f"stats: {json.dumps(self.stats)}")
        if self.stderr.strip():
            lines.append("stderr:\n" + self.stderr[-tail:])
        return "\n".join(lines)


def parse_report(stdout: str) -> dict | None:
    """The ansible.posix.json report in stdout: the last line that is a JSON object with plays and stats."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
            except ValueError:
                continue
            if isinstance(report, dict) and "plays" in report and "stats" in report:
                return report
    return None


def run_playbook(
    playbook: str, *args: str, api_key: str, extra_env: dict | None = None, timeout: int = 240
) -> PlaybookResult:
    """Run ansible-playbook from the project root (so ansible.cfg and the inventory apply).

    ``extra_env`` adds to the environment, e.g. ``cluster_env()`` for the integration tests.
    """
    argv = [playbook]
    if extra_env and extra_env.get("K8S_AUTH_CONTEXT"):
        # The test states the context it means, as `make deploy CONTEXT=...` does (a test's own -e wins).
        argv += ["-e", f"cluster_expected_context={extra_env['K8S_AUTH_CONTEXT']}"]
    argv += list(args)
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), *argv],
        cwd=ROOT,
        env=ansible_env(api_key, extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return PlaybookResult(argv, proc.returncode, proc.stdout, proc.stderr, parse_report(proc.stdout))


@dataclass
class Rendered:
    """The manifests tests/render.yml wrote for one scenario."""

    scenario: str
    api_key: str
    render_dir: Path
    files: dict[str, str]  # "<role>/<template>[-N].yaml" -> rendered text
    run: PlaybookResult  # the tests/render.yml run (which role tasks it ran, with what results)
    overrides: dict = field(default_factory=dict)  # the -e vars file of the scenario
    objects: list[dict] = field(default_factory=list)
    sources: list[tuple[str, dict]] = field(default_factory=list)  # (file key, object)

    def __post_init__(self):
        for key in sorted(self.files):
            for obj in yaml.safe_load_all(self.files[key]):
                if obj is not None:
                    self.sources.append((key, obj))
                    self.objects.append(obj)

    def expected(self, name: str):
        """What a variable should be in this scenario: the override, else the plain group var or role
        default (the order in which tests/render.yml lets them win)."""
        if name in self.overrides:
            return self.overrides[name]
        defaults = [load_yaml(p) or {} for p in sorted(ROLES_DIR.glob("*/defaults/main.yml"))]
        for source in [group_vars(), *defaults]:
            if name in source:
                value = source[name]
                assert "{{" not in json.dumps(value), f"{name} is a template ({value!r}); compute the expectation"
                return value
        raise KeyError(name)

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]

    def one(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict:
        found = [
            o
            for o in self.of_kind(kind)
            if (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''} in {self.scenario}, found {len(found)}"
        return found[0]

    def from_file(self, key: str) -> list[dict]:
        return [o for k, o in self.sources if k == key]


def render(
    render_dir: Path,
    *extra_args: str,
    scenario: str = "custom",
    api_key: str | None = None,
    vars_file: Path | None = None,
) -> Rendered:
    """Render every role's templates with tests/render.yml; fail with what Ansible reported if it fails."""
    api_key = api_key or new_api_key()
    render_dir.mkdir(parents=True, exist_ok=True)
    # The roles read with kubernetes.core.k8s_info, which the stand-in answers offline, not with the
    # kubernetes.core.k8s lookup they use when the controller is this machine (it would need a cluster).
    args = ["-e", f"render_dir={render_dir}", "-e", json.dumps({"__ai_stack_controller_here": False})]
    if vars_file is not None:
        args += ["-e", f"@{vars_file}"]
    result = run_playbook(
        "tests/render.yml",
        *args,
        *extra_args,
        api_key=api_key,
        extra_env={"ANSIBLE_COLLECTIONS_PATH": f"{RENDER_COLLECTIONS}{os.pathsep}{ROOT / '.ansible' / 'collections'}"},
    )
    if result.rc != 0 or result.failed_tasks():
        raise AssertionError(f"tests/render.yml failed for {scenario}:\n{result.describe()}")
    files = json.loads((render_dir / "rendered.json").read_text())
    overrides = (load_yaml(vars_file) or {}) if vars_file is not None else {}
    return Rendered(
        scenario=scenario, api_key=api_key, render_dir=render_dir, files=files, run=result, overrides=overrides
    )


# --- small accessors for workload objects ---------------------------------


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def all_containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def container(obj: dict, name: str) -> dict:
    found = [c for c in all_containers(obj) if c["name"] == name]
    assert len(found) == 1, f"{obj['metadata']['name']} has no single container {name}"
    return found[0]


def env_of(c: dict) -> dict:
    """Container env as {name: value or valueFrom}."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# --- interrupted runs ------------------------------------------------------------------


def kill_strays(marker: str) -> None:
    """SIGKILL every process whose command line holds ``marker`` (the test's namespace). Ansible
    runs each task in a worker that starts a session of its own, so a worker outlives a main
    process killed with SIGKILL (as after a user's `kill -9`) and would go on with its module."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            if marker in cmdline:
                os.kill(int(pid), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


def start_playbook(playbook: str, *args: str, api_key: str, extra_env: dict) -> subprocess.Popen:
    """ansible-playbook in a session of its own, output discarded: a signal sent to the session
    reaches the run and its workers, as from a terminal (kill_when)."""
    argv = [playbook, "-e", f"cluster_expected_context={extra_env['K8S_AUTH_CONTEXT']}", *args]
    return subprocess.Popen([str(BIN / "ansible-playbook"), *argv], cwd=ROOT, env=ansible_env(api_key, extra_env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc: subprocess.Popen, ready, sig: int, what: str, marker: str) -> None:
    """Send ``sig`` to the run's session once ``ready()`` is true (polled); then make sure no
    process of the run is left (``marker``: a string only its command lines hold)."""
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended before {what} appeared"
            if ready():
                os.killpg(proc.pid, sig)
                proc.wait(timeout=120)
                return
            time.sleep(0.1)
        raise AssertionError(f"{what} never appeared")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        kill_strays(marker)
