"""Local test cluster: a real Kubernetes control plane with KWOK-simulated nodes.

The command line, run with tools/ on PYTHONPATH (`make cluster-up` does):
  python -m testcluster build    # build once (cached)
  python -m testcluster plan     # list the binaries build makes and whether they exist
  python -m testcluster up       # build if needed, start cluster, wait healthy
  python -m testcluster status   # exit 0 if up and healthy
  python -m testcluster env      # print export lines (KUBECONFIG, K8S_AUTH_*)
  python -m testcluster down     # delete cluster, stop all processes
  python -m testcluster stop     # stop the control plane (the API server goes away; for fault tests)
  python -m testcluster start    # start it again and wait until healthy

Environment:
  AI_STACK_TESTCLUSTER_CACHE  build cache (default ~/.cache/ai-stack-testcluster)
  TESTCLUSTER_WORKER_CPU      node cpu (default "4")
  TESTCLUSTER_WORKER_MEMORY   node memory (default "8Gi")
  TESTCLUSTER_WORKER_PODS     node pods (default "110")
  TESTCLUSTER_CONTROL_PLANE_CPU / _MEMORY   control-plane node (default: as workers)
  GOPROXY / GOSUMDB / ...     the usual Go module settings
"""
from __future__ import annotations

import argparse

from . import cluster
from .build import Plan, build
from .common import log


def cmd_build(_args) -> int:
    build(Plan())
    return 0


def cmd_plan(_args) -> int:
    """Print what `build` would produce and whether it is built (resolves the module
    versions through the Go module proxy; creates the cache directory if needed)."""
    plan = Plan()
    for name, path in plan.binaries().items():
        print(f"{name}\t{path}\t{'built' if path.exists() else 'missing'}")
    return 0


def cmd_up(_args) -> int:
    cluster.up()
    return 0


def cmd_down(_args) -> int:
    cluster.down()
    return 0


def cmd_status(_args) -> int:
    ok, why = cluster.health()
    log(why)
    return 0 if ok else 1


def cmd_stop(_args) -> int:
    cluster.control_plane("stop")
    return 0


def cmd_start(_args) -> int:
    cluster.control_plane("start")
    return 0


def cmd_env(_args) -> int:
    for name, value in cluster.env().items():
        print(f"export {name}={value}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="testcluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("build", "plan", "up", "down", "stop", "start", "status", "env"):
        sub.add_parser(name)
    args = p.parse_args(argv)
    return {
        "build": cmd_build,
        "plan": cmd_plan,
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "stop": cmd_stop,
        "start": cmd_start,
        "env": cmd_env,
    }[args.cmd](args)
