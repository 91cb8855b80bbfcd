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

REPO = Path(__file__).resolve().parents[2]
STAGES = REPO / "tools" / "testcluster" / "stages-ecosystem.yaml"
KUBECONFIG = os.environ.get("K8S_AUTH_KUBECONFIG") or str(REPO / ".testcluster" / "kubeconfig")
CONTEXT = os.environ.get("K8S_AUTH_CONTEXT", "kwok-desktop-sim")


def kwok_binary() -> str:
    out = subprocess.run([sys.executable, str(REPO / "tools" / "testcluster.py"), "env"],
                         capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("export TESTCLUSTER_KWOKCTL="):
            kwokctl = Path(line.split("=", 1)[1])
            # kwok-<version>/kwok next to kwokctl-<version>/kwokctl
            return str(kwokctl.parent.parent / kwokctl.parent.name.replace("kwokctl-", "kwok-") / "kwok")
    raise SystemExit("sim_operators: tools/testcluster.py env printed no TESTCLUSTER_KWOKCTL")


def served(api_version: str, kind: str) -> bool:
    r = subprocess.run(["kubectl", f"--kubeconfig={KUBECONFIG}", f"--context={CONTEXT}", "get", "--raw",
                        f"/apis/{api_version}", "--request-timeout=5s"], capture_output=True, text=True)
    if r.returncode != 0:
        return False
    return any(res.get("kind") == kind for res in json.loads(r.stdout).get("resources", []))


def supervise(pidfile: Path) -> None:
    kwok = kwok_binary()
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
