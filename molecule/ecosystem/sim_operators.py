#!/usr/bin/env python3
"""SIMULATION helper for the molecule scenario `ecosystem` (simulated cluster only).

Plays the visible part of the KubeRay and KServe operators with KWOK stages
(tools/testcluster/stages-ecosystem.yaml): one extra `kwok` controller per custom
resource kind, started once the kind is served (kwok v0.8.0 exits at start when a
stage's kind is unknown), restarted if it exits (for example after the CRD was
deleted and re-created).

  sim_operators.py start <pidfile>   # start the supervisor in the background
  sim_operators.py stop <pidfile>    # stop it and the kwok processes it started
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# The simulated cluster's tool, tools/testcluster, knows the cluster's settings and its binaries.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from testcluster import build, cluster  # noqa: E402
from testcluster.common import CONF_DIR  # noqa: E402

STAGES = CONF_DIR / "stages-ecosystem.yaml"
SIM_ENV = cluster.env()
KUBECONFIG = os.environ.get("K8S_AUTH_KUBECONFIG") or SIM_ENV["K8S_AUTH_KUBECONFIG"]
CONTEXT = os.environ.get("K8S_AUTH_CONTEXT") or SIM_ENV["K8S_AUTH_CONTEXT"]


def served(api_version: str, kind: str) -> bool:
    r = subprocess.run(["kubectl", f"--kubeconfig={KUBECONFIG}", f"--context={CONTEXT}", "get", "--raw",
                        f"/apis/{api_version}", "--request-timeout=5s"], capture_output=True, text=True)
    if r.returncode != 0:
        return False
    return any(res.get("kind") == kind for res in json.loads(r.stdout).get("resources", []))


def supervise(pidfile: Path) -> None:
    kwok = str(build.pinned_binary("kwok"))
    groups: dict[tuple[str, str], list[dict]] = {}
    for doc in yaml.safe_load_all(STAGES.read_text()):
        if doc:
            ref = doc["spec"]["resourceRef"]
            groups.setdefault((ref["apiGroup"], ref["kind"]), []).append(doc)
    workdir = Path(tempfile.mkdtemp(prefix="sim-operators-"))
    procs: dict[tuple[str, str], subprocess.Popen] = {}

    def stop(*_):
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        pidfile.unlink(missing_ok=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for (api_version, kind), docs in groups.items():
            p = procs.get((api_version, kind))
            if p is not None and p.poll() is None:
                continue
            if not served(api_version, kind):
                continue
            conf = workdir / f"{kind}.yaml"
            conf.write_text(yaml.safe_dump_all(docs))
            log = open(workdir / f"{kind}.log", "ab")
            procs[(api_version, kind)] = subprocess.Popen(
                [kwok, f"--kubeconfig={KUBECONFIG}", f"--config={conf}", "--manage-all-nodes=false",
                 # kwok refuses to start without a node selection; this label matches no node.
                 "--manage-nodes-with-label-selector=ai-stack.test/sim-operator=none"],
                stdout=log, stderr=subprocess.STDOUT)
            print(f"sim_operators: started kwok for {kind} (log {workdir / (kind + '.log')})", flush=True)
        time.sleep(2)


def main() -> int:
    action, pidfile = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        if pidfile.exists():
            try:
                os.kill(int(pidfile.read_text()), 0)
                return 0  # already running
            except (OSError, ValueError):
                pass
        log = open(pidfile.with_suffix(".log"), "ab")
        p = subprocess.Popen([sys.executable, __file__, "run", str(pidfile)], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        pidfile.write_text(str(p.pid))
        return 0
    if action == "run":
        supervise(pidfile)
        return 0
    if action == "stop":
        if not pidfile.exists():
            return 0
        pid = int(pidfile.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pidfile.unlink(missing_ok=True)
            return 0
        for _ in range(30):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.5)
        pidfile.unlink(missing_ok=True)
        return 0
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
