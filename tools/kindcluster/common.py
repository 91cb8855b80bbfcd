"""Paths, pinned versions, logging and subprocess helpers shared by the kindcluster modules."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

# The pins and the build cache (Go modules, Go build cache, binaries) shared with the simulated
# cluster, tools/testcluster.
from testcluster.common import CACHE, load_versions

TOOLS_DIR = Path(__file__).resolve().parent.parent
REPO = TOOLS_DIR.parent
FILES = Path(__file__).resolve().parent / "files"
KIND_CACHE = CACHE / "kind"
# Runtime state of this checkout: kubeconfig, logs. `down` removes it.
RUN_DIR = REPO / ".kindcluster"
KUBECONFIG = RUN_DIR / "kubeconfig"
CLUSTER_NAME = "desktop"
CONTEXT = f"kind-{CLUSTER_NAME}"
NODE_NAMES = ["desktop-control-plane", "desktop-worker", "desktop-worker2"]
POD_SUBNET = "10.244.0.0/16"
SERVICE_SUBNET = "10.96.0.0/16"  # kind's default, stated so the nodes can guard it


def log(msg: str) -> None:
    print(f"[kindcluster] {msg}", flush=True)


def die(msg: str, code: int = 1):
    print(f"[kindcluster] ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def versions() -> dict:
    return load_versions()


def run(cmd, *, env=None, cwd=None, check=True, capture=False, input_text=None,
        input_bytes=None, timeout=None, stdout=None) -> subprocess.CompletedProcess:
    """Run a command; on failure with check=True, print its output and stop."""
    text = input_bytes is None
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, timeout=timeout, text=text,
                       input=input_bytes if input_bytes is not None else input_text,
                       stdout=subprocess.PIPE if capture else stdout,
                       stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        if capture:
            out = r.stdout if text else r.stdout.decode(errors="replace")
            err = r.stderr if text else r.stderr.decode(errors="replace")
            sys.stderr.write(out or "")
            sys.stderr.write(err or "")
        die(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}")
    return r


class Timer:
    """`with Timer('label'):` logs how long a step took."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            log(f"{self.label}: {time.monotonic() - self.t0:.0f}s")


def is_root() -> bool:
    return os.geteuid() == 0
