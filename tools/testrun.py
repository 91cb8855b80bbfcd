#!/usr/bin/env python3
"""`make test`: every test, in the order that keeps a 2-core machine busy.

  1. lint and the offline tests (printed as they run); meanwhile both clusters start, the real
     kind cluster and the simulated one (logs in .test-logs/), unless they are up already;
  2. two streams at the same time, sharing no cluster and no namespace, each starting when its
     cluster is up:
     - printed as it runs (and kept in .test-logs/molecule-kind.log): molecule `default` on kind,
       tests/integration/kind (faults with real pods and nodes), kind down (it fails if anything
       of the cluster is left behind), then tests/integration on the simulated cluster;
     - .test-logs/molecule-sim.log, printed at the end: molecule `ecosystem` on the simulated cluster;
  3. the simulated cluster stops; molecule's logs are searched for the run's API key (a random
     one, made here) and its base64 form; each phase's time is printed last.

A cluster that was already running is left running, and so is every cluster with KEEP_CLUSTER=1.
The make targets it runs (lint, unit, molecule-kind, molecule-sim, integration, kind-up, ...) also
work alone.
"""
from __future__ import annotations

import base64
import os
import secrets
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


def make_tee(*targets: str, log: Path) -> int:
    """Run make, printing its output as it comes and keeping it in ``log``; its exit status."""
    with open(log, "w") as out:
        proc = subprocess.Popen(MAKE + list(targets), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for chunk in iter(lambda: proc.stdout.readline(), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            out.write(chunk.decode(errors="replace"))
        return proc.wait()


def leaks(secret: str, logs: list[Path]) -> list[str]:
    """The logs (with line numbers) that hold ``secret`` or its base64 form (as a Secret's data)."""
    forms = {secret: "the key", base64.b64encode(secret.encode()).decode(): "its base64 form"}
    found = []
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), 1):
            found += [f"{log.relative_to(REPO)}:{number}: {what}" for form, what in forms.items() if form in line]
    return found


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
    # A key of this run only, for molecule's runs to put into their Secret and for the search
    # of the logs at the end (never the user's own key).
    api_key = os.environ["ANTHROPIC_API_KEY"] = f"sk-ant-test-{secrets.token_urlsafe(24)}"
    times: list[tuple[str, float]] = []
    started = {c: not is_up(c) for c in CLUSTERS}
    ups = {c: make(CLUSTERS[c][0], log=LOGS / f"{c}-up.log") for c in CLUSTERS if started[c]}
    if ups:
        say(f"starting {' and '.join(ups)} cluster(s) while lint and unit tests run "
            f"(logs: .test-logs/<cluster>-up.log)")
    with Phase(times, "lint and unit tests"):
        checks_rc = make("lint", "unit").wait()
    rc = {"lint and unit tests": checks_rc}
    failed: list[str] = []

    def wait_up(cluster: str) -> bool:
        """Wait for a cluster this run started; False (and its log shown) if it did not start."""
        if cluster not in ups:
            return True
        with Phase(times, f"{cluster} cluster up (waited after lint and unit tests)"):
            code = ups.pop(cluster).wait()
        if code != 0:
            failed.append(f"{cluster} cluster did not start")
            show(LOGS / f"{cluster}-up.log", f"{cluster} cluster start failed")
        return code == 0

    sim = None
    if checks_rc == 0:
        # The ecosystem scenario starts as soon as its cluster is up (on a fresh machine the kind
        # cluster's build takes longer).
        sim_ok = wait_up("sim")
        if sim_ok:
            sim_t0 = time.monotonic()
            sim = make("molecule-sim", log=LOGS / "molecule-sim.log")
            say("molecule `ecosystem` on the simulated cluster started alongside (log: .test-logs/molecule-sim.log)")
        if wait_up("kind"):
            with Phase(times, "molecule default (kind, real containers)"):
                rc["molecule default"] = make_tee("molecule-kind", log=LOGS / "molecule-kind.log")
            with Phase(times, "integration tests on kind (real pods and nodes)"):
                rc["integration on kind"] = make("kind-integration").wait()
            if started["kind"] and not KEEP:
                with Phase(times, "kind down and leftover check"):
                    rc["kind down"] = make("kind-down").wait()
                started["kind"] = False
        if sim_ok:
            with Phase(times, "integration tests (simulated cluster)"):
                rc["integration"] = make("integration").wait()
            rc["molecule ecosystem"] = sim.wait()
            times.append(("molecule ecosystem (simulated, alongside)", time.monotonic() - sim_t0))
            show(LOGS / "molecule-sim.log", f"molecule ecosystem on the simulated cluster, exit {rc['molecule ecosystem']}")
    for cluster, proc in ups.items():  # lint failed: the starts still running end first
        proc.wait()
    for c in CLUSTERS:
        if started[c] and not KEEP:
            rc[f"{c} down"] = make(CLUSTERS[c][1], log=LOGS / f"{c}-down.log").wait()
            if rc[f"{c} down"] != 0:
                show(LOGS / f"{c}-down.log", f"{c} cluster stop failed")
    molecule_logs = [log for log in (LOGS / "molecule-kind.log", LOGS / "molecule-sim.log") if log.exists()]
    found = leaks(api_key, molecule_logs)
    say(f"API key searched for in {', '.join(str(log.relative_to(REPO)) for log in molecule_logs) or 'no log'}: "
        + ("FOUND in " + "; ".join(found) if found else "not found"))
    if found:
        failed.append("the API key in molecule's logs")
    failed += [name for name, code in rc.items() if code != 0]
    for name, seconds in times:
        say(f"{name}: {seconds:.0f} s")
    say(f"total {time.monotonic() - t0:.0f} s; " + (f"FAILED: {', '.join(failed)}" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
