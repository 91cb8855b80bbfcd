"""Paths, names and pinned versions shared by the testcluster modules, and logging."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# This package's folder also holds its data: versions.json, the kwokctl and KWOK stage
# configurations, and the provisioner's main.go.
CONF_DIR = Path(__file__).resolve().parent
REPO = CONF_DIR.parent.parent
RUN_DIR = REPO / ".testcluster"
KUBECONFIG = RUN_DIR / "kubeconfig"
CLUSTER_NAME = "desktop-sim"
CONTEXT = f"kwok-{CLUSTER_NAME}"
NODE_NAMES = ["desktop-control-plane", "desktop-worker", "desktop-worker2"]
CACHE = Path(os.environ.get("AI_STACK_TESTCLUSTER_CACHE")
             or Path.home() / ".cache" / "ai-stack-testcluster")
# kwokctl keeps its clusters under $KWOK_WORKDIR/clusters/<name>; keep ours in the
# repo's runtime dir so `down` can remove everything it made.
KWOK_WORKDIR = RUN_DIR / "kwok"
PROV_PID = RUN_DIR / "provisioner.pid"
PROV_LOG = RUN_DIR / "provisioner.log"
PROVISIONER_NAME = "testcluster.local/hostpath"


def log(msg: str) -> None:
    print(f"[testcluster] {msg}", flush=True)


def die(msg: str, code: int = 1) -> None:
    print(f"[testcluster] ERROR: {msg}", file=sys.stderr, flush=True)
    sys.exit(code)


def load_versions() -> dict:
    with open(CONF_DIR / "versions.json") as f:
        v = json.load(f)
    return {k: val for k, val in v.items() if not k.startswith("_")}
