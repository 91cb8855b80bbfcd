#!/usr/bin/env python3
"""`make deploy`: ansible-playbook site.yml on the kube context in use.

With CONTEXT=... or a kubeconfig that has a context, it runs site.yml there (the cluster role
then checks the context). With no kubeconfig or no context at all (a fresh machine), it makes
the local kind cluster (tools/kindcluster: built offline on first use, cached) and deploys to it,
saying so in its first and last lines along with how to use Docker Desktop's cluster instead.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOCAL_CONTEXT = "kind-desktop"
DOCKER_DESKTOP = ("To use Docker Desktop's cluster instead: Settings > Kubernetes, enable it with "
                  "provisioner kind and 2 worker nodes, then run `make deploy` again (context "
                  "docker-desktop).")


def say(msg: str) -> None:
    print(f"make deploy: {msg}", flush=True)


def kubeconfig_path() -> Path:
    """The file ai_stack_kubeconfig (roles/ai_stack/defaults/main.yml) reads, by the same rule."""
    env = os.environ.get("K8S_AUTH_KUBECONFIG") or (os.environ.get("KUBECONFIG", "").split(":")[0])
    return Path(env).expanduser() if env else Path.home() / ".kube" / "config"


def read_kubeconfig(path: Path) -> dict | None:
    """The kubeconfig as a dict; None when it is missing, unreadable or malformed."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def has_context(path: Path) -> bool:
    data = read_kubeconfig(path)
    if data is None:
        return path.exists()  # unreadable or malformed: let the playbook report it
    return bool(data.get("contexts"))


def local_cluster() -> dict[str, str]:
    """Start (or reuse) the local kind cluster; return the environment that reaches it."""
    if platform.system() != "Linux":
        say(f"there is no kube context, and a local cluster can only be made on Linux. "
            f"{DOCKER_DESKTOP}")
        sys.exit(1)
    env = dict(os.environ, PYTHONPATH=str(REPO / "tools"))
    tool = [sys.executable, "-m", "kindcluster"]
    if subprocess.run(tool + ["up"], env=env, cwd=REPO).returncode != 0:
        say(f"could not start the local kind cluster (output above). {DOCKER_DESKTOP}")
        sys.exit(1)
    out = subprocess.run(tool + ["env"], env=env, cwd=REPO, stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export "):].split("=", 1)
            found[key] = value
    return found


def current_context(path: Path) -> str | None:
    return (read_kubeconfig(path) or {}).get("current-context")


def local_model_args() -> list[str]:
    """The local cluster's model and registry mirror (tools/kindcluster/localmodel.py): the real
    Docker Model Runner there pulls a tiny model made on this machine, not one from Docker Hub."""
    sys.path.insert(0, str(REPO / "tools"))
    from kindcluster.localmodel import deploy_vars
    return ["-e", json.dumps(deploy_vars())]


def context_args(context: str) -> list[str]:
    """A context named on the command line is the one the user means: use it, and expect it
    (the cluster role stops when the context in use is not cluster_expected_context)."""
    return ["-e", f"ai_stack_context={context}", "-e", f"cluster_expected_context={context}"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inventory")
    p.add_argument("--context")
    p.add_argument("--profile", action="store_true",
                   help="print each task's time and the slowest tasks at the end (ansible.posix.profile_tasks)")
    p.add_argument("--mitogen", action="store_true",
                   help="run with Mitogen's strategy (plugins/strategy/mitogen_linear.py): about twice as fast")
    p.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    extra = [x for x in a.args if x != "--"]
    cmd = [str(BIN / "ansible-playbook"), "site.yml"]
    if a.inventory:
        cmd += ["-i", a.inventory]
    env = dict(os.environ)
    if a.profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(
            x for x in (env.get("ANSIBLE_CALLBACKS_ENABLED", ""), "ansible.posix.profile_tasks") if x)
    if a.mitogen:
        env["ANSIBLE_STRATEGY"] = "mitogen_linear"
    kubeconfig = kubeconfig_path()
    local = not a.context and not has_context(kubeconfig)
    if local:
        say(f"no kube context found ({kubeconfig} {'has none' if kubeconfig.exists() else 'does not exist'}): "
            f"deploying to a local kind cluster on this machine (context {LOCAL_CONTEXT}), "
            "built from source on first use. " + DOCKER_DESKTOP)
        found = local_cluster()
        env.update(found)
        env["K8S_AUTH_KUBECONFIG"] = found["KUBECONFIG"]
        cmd += context_args(LOCAL_CONTEXT)
    elif a.context:
        cmd += context_args(a.context)
    if local or (a.context or current_context(kubeconfig)) == LOCAL_CONTEXT:
        cmd += local_model_args()
    if not shutil.which(cmd[0]):
        say(f"{cmd[0]} not found: run `make venv`")
        return 1
    rc = subprocess.run(cmd + extra, env=env, cwd=REPO).returncode
    if local:
        exports = "; ".join(f"export {k}={v}" for k, v in found.items())
        state = "deployed" if rc == 0 else f"FAILED (exit {rc})"
        say(f"{state} on the local kind cluster (context {LOCAL_CONTEXT}). To use it with kubectl: "
            f"{exports}. {DOCKER_DESKTOP}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
