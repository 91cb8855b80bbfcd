"""Helpers the kind tests share: the kind cluster's Docker engine and its model registry
(tools/kindcluster/localmodel.py), read and, for a test's duration, slowed down."""

import contextlib
import os
import subprocess
import sys

from ai_stack_testlib import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from kindcluster import localmodel  # noqa: E402


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """docker against the kind cluster's engine (.kindcluster/docker-host)."""
    host = (ROOT / ".kindcluster" / "docker-host").read_text().strip()
    return subprocess.run(["docker", *args], env={**os.environ, "DOCKER_HOST": host}, capture_output=True,
                          text=True, timeout=120, check=check)


def registry_blob_gets() -> int:
    """Blob downloads of the model the registry served so far (its access log)."""
    r = docker("logs", localmodel.CONTAINER)
    return (r.stdout + r.stderr).count(f"GET /v2/{localmodel.MODEL.split(':')[0]}/blobs/")


@contextlib.contextmanager
def slow_registry(rate: str = "128kbit"):
    """A slow link to the model registry while the block runs: a token-bucket filter (tc tbf) on what the
    registry's container sends, set in its network namespace (nsenter, as root). At 128 kbit/s the
    model's 469,568 bytes take about 30 s to pull instead of 0.2 s: a model whose pull and load
    really outlast a short startup budget, and a window in which a pod can be Ready without it."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", localmodel.CONTAINER).stdout.strip()
    qdisc = ["nsenter", "-t", pid, "-n", "tc", "qdisc"]
    subprocess.run([*qdisc, "replace", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "16kb",
                    "latency", "100ms"], capture_output=True, text=True, timeout=30, check=True)
    try:
        yield
    finally:
        subprocess.run([*qdisc, "del", "dev", "eth0", "root"], capture_output=True, timeout=30, check=False)
