"""Helpers for the integration tests: the test cluster's kubeconfig and ansible-playbook runs."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def kube_env():
    """Kubeconfig path and context of the test cluster."""
    kubeconfig = os.environ.get("K8S_AUTH_KUBECONFIG", str(ROOT / ".testcluster" / "kubeconfig"))
    context = os.environ.get("K8S_AUTH_CONTEXT", "kwok-desktop-sim")
    return kubeconfig, context


def run_playbook(*args, api_key, extra_env=None, timeout=900):
    """Run ansible-playbook from the project root against the test cluster."""
    kubeconfig, context = kube_env()
    env = dict(os.environ)
    env.update(
        {
            "K8S_AUTH_KUBECONFIG": kubeconfig,
            "K8S_AUTH_CONTEXT": context,
            "ANTHROPIC_API_KEY": api_key,
            "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0",
            "PATH": f"{BIN}:{env.get('PATH', '')}",
        }
    )
    env.update(extra_env or {})
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
