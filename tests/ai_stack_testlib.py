"""Shared helpers for the offline tests: paths, ansible-playbook runs, rendered manifests."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
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

# Variables a developer's shell may carry that would point a run at a real cluster.
_SCRUBBED_ENV = ("KUBECONFIG", "K8S_AUTH_KUBECONFIG", "K8S_AUTH_CONTEXT", "K8S_AUTH_HOST", "ANSIBLE_INVENTORY")


def new_api_key() -> str:
    """A random, real-looking API key, so that a leak can be searched for."""
    return "sk-ant-test-" + secrets.token_hex(20)


def role_names() -> list[str]:
    return sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


def rendered_roles() -> list[str]:
    """The roles tests/render.yml renders (its play variable render_roles)."""
    return list(load_yaml(TESTS / "render.yml")[0]["vars"]["render_roles"])


def group_vars() -> dict:
    merged: dict = {}
    for path in sorted(GROUP_VARS_DIR.glob("*.yml")):
        merged.update(load_yaml(path) or {})
    return merged


def ansible_env(api_key: str, extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV and not k.startswith("ANSIBLE_")}
    env.update(
        {
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANTHROPIC_API_KEY": api_key,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    env.update(extra or {})
    return env


def run_playbook(playbook: str, *args: str, api_key: str, extra_env: dict | None = None, timeout: int = 240):
    """Run ansible-playbook from the project root (so ansible.cfg and the inventory apply)."""
    return subprocess.run(
        [str(BIN / "ansible-playbook"), playbook, *args],
        cwd=ROOT,
        env=ansible_env(api_key, extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Rendered:
    """The manifests tests/render.yml wrote for one scenario."""

    scenario: str
    api_key: str
    render_dir: Path
    files: dict[str, str]  # "<role>/<template>[-N].yaml" -> rendered text
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
        """What a variable should be in this scenario: the override, else the plain group var or role default."""
        if name in self.overrides:
            return self.overrides[name]
        for source in [group_vars()] + [load_yaml(ROLES_DIR / r / "defaults" / "main.yml") or {} for r in role_names()]:
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
    """Render every role's templates with tests/render.yml; fail with Ansible's output if it fails."""
    api_key = api_key or new_api_key()
    render_dir.mkdir(parents=True, exist_ok=True)
    args = ["-e", f"render_dir={render_dir}"]
    if vars_file is not None:
        args += ["-e", f"@{vars_file}"]
    result = run_playbook("tests/render.yml", *args, *extra_args, api_key=api_key)
    if result.returncode != 0:
        raise AssertionError(
            f"tests/render.yml failed for {scenario} (rc={result.returncode}):\n"
            f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
        )
    files = json.loads((render_dir / "rendered.json").read_text())
    overrides = (load_yaml(vars_file) or {}) if vars_file is not None else {}
    return Rendered(scenario=scenario, api_key=api_key, render_dir=render_dir, files=files, overrides=overrides)


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
