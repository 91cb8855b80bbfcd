#!/usr/bin/env python3
"""`make test`: every test, in the order that keeps a 2-core machine busy.

  1. lint and the offline tests (printed as they run); meanwhile both clusters start, the real
     kind cluster and the simulated one (logs in .test-logs/), unless they are up already;
  2. two streams at the same time, sharing no cluster and no namespace:
     - printed as it runs: molecule `default` on kind, kind down (it fails if anything of the
       cluster is left behind), then tests/integration on the simulated cluster;
     - .test-logs/molecule-sim.log, printed at the end: molecule `ecosystem` on the simulated cluster;
  3. the simulated cluster stops; each phase's time is printed last.

A cluster that was already running is left running, and so is every cluster with KEEP_CLUSTER=1.
The make targets it runs (lint, unit, molecule-kind, molecule-sim, integration, kind-up, ...) also
work alone.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOGS = REPO / ".test-logs"
MAKE = [os.environ.get("MAKE", "make"), "--no-print-directory"]
KEEP = bool(os.environ.get("KEEP_CLUSTER"))
CLUSTERS = {"kind": ("kind-up", "kind-down", "kindcluster"),
            "sim": ("cluster-up", "cluster-down", "testcluster")}


def say(msg: str) -> None:
    print(f"make test: {msg}", flush=True)


def make(*targets: str, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "w") if log else None  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(MAKE + list(targets), cwd=REPO, stdout=out, stderr=subprocess.STDOUT if out else None)


def is_up(cluster: str) -> bool:
    env = dict(os.environ, PYTHONPATH=str(REPO / "tools"))
    return subprocess.run([sys.executable, "-m", CLUSTERS[cluster][2], "status"], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def show(log: Path, title: str) -> None:
    print(f"===== {title} ({log.relative_to(REPO)}) =====", flush=True)
    print(log.read_text(errors="replace"), end="", flush=True)


class Phase:
    """A named step whose time is reported at the end."""

    def __init__(self, times: list, name: str):
        self.times, self.name = times, name

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.times.append((self.name, time.monotonic() - self.t0))


def main() -> int:
    LOGS.mkdir(exist_ok=True)
    t0 = time.monotonic()
    times: list[tuple[str, float]] = []
    started = {c: not is_up(c) for c in CLUSTERS}
    ups = {c: make(CLUSTERS[c][0], log=LOGS / f"{c}-up.log") for c in CLUSTERS if started[c]}
    if ups:
        say(f"starting {' and '.join(ups)} cluster(s) while lint and unit tests run "
            f"(logs: .test-logs/<cluster>-up.log)")
    with Phase(times, "lint and unit tests"):
        checks_rc = make("lint", "unit").wait()
    with Phase(times, "clusters up (after lint and unit tests)"):
        up_rc = {c: p.wait() for c, p in ups.items()}
    failed = [f"{c} cluster did not start" for c, rc in up_rc.items() if rc != 0]
    for c, rc in up_rc.items():
        if rc != 0:
            show(LOGS / f"{c}-up.log", f"{c} cluster start failed")
    rc = {"lint and unit tests": checks_rc}
    if checks_rc == 0 and not failed:
        sim_t0 = time.monotonic()
        sim = make("molecule-sim", log=LOGS / "molecule-sim.log")
        say("molecule `ecosystem` on the simulated cluster started alongside (log: .test-logs/molecule-sim.log)")
        with Phase(times, "molecule default (kind, real containers)"):
            rc["molecule default"] = make("molecule-kind").wait()
        if started["kind"] and not KEEP:
            with Phase(times, "kind down and leftover check"):
                rc["kind down"] = make("kind-down").wait()
            started["kind"] = False
        with Phase(times, "integration tests (simulated cluster)"):
            rc["integration"] = make("integration").wait()
        rc["molecule ecosystem"] = sim.wait()
        times.append(("molecule ecosystem (simulated, alongside)", time.monotonic() - sim_t0))
        show(LOGS / "molecule-sim.log", f"molecule ecosystem on the simulated cluster, exit {rc['molecule ecosystem']}")
    for c in CLUSTERS:
        if started[c] and not KEEP:
            rc[f"{c} down"] = make(CLUSTERS[c][1], log=LOGS / f"{c}-down.log").wait()
            if rc[f"{c} down"] != 0:
                show(LOGS / f"{c}-down.log", f"{c} cluster stop failed")
    failed += [name for name, code in rc.items() if code != 0]
    for name, seconds in times:
        say(f"{name}: {seconds:.0f} s")
    say(f"total {time.monotonic() - t0:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
