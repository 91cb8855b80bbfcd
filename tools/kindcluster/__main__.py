"""python -m kindcluster {build,up,down,status,env,rewire,vars} (PYTHONPATH=tools; see `make kind-up`).

  build   build what `up` needs (cached under the test-cluster build cache)
  up      start (or reuse) the kind cluster `desktop`; ends with the export lines to use it
  down    delete the cluster, stop the Docker engine if we started it, and check that no
          process, mount, bridge, iptables rule or cgroup of ours is left (exit 1 if one is)
  status  exit 0 when the cluster is up and healthy
  env     print the export lines
  rewire  wire the pod network again after a node was restarted (`docker start desktop-worker2`);
          `up` does it too when it reuses the cluster
  vars    print, as JSON for `ansible-playbook -e`, the variables a deploy to this cluster needs:
          the local model and its registry (localmodel.py)
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import sys
import time

from . import cluster
from . import engine
from . import gobuild
from . import localmodel
from . import modelregistry
from . import netpol
from . import nodeimage
from . import stackimages
from .common import CONTEXT, KUBECONFIG, NODE_NAMES, RUN_DIR, die, log


def _kind(host: str) -> cluster.Kind:
    b = gobuild.binaries()
    return cluster.Kind(host, b["kind"], b["kubectl"])


def build_all(host: str) -> tuple[dict, str | None, str | None]:
    """Go binaries; kind's published node image if it can be pulled, else the Debian base image
    the node image is built on (debootstrap: mostly download and unpack, made while Go builds,
    which is CPU-bound). Returns (binaries, published image or None, base tag or None)."""
    published = nodeimage.published(host)
    base = None
    if not published:
        base = concurrent.futures.ThreadPoolExecutor(max_workers=1).submit(
            nodeimage.build_base, host)
    b = gobuild.build()
    if not published:
        netpol.build()
    return b, published, (base.result() if base is not None else None)


def cmd_build(_args) -> int:
    t0 = time.monotonic()
    host, _ = engine.ensure()
    b, published, base = build_all(host)
    if not published:
        nodeimage.build_node(host, b, base)
    stackimages.build_all(host, b["metrics-server"])
    modelregistry.build_image(host)
    log(f"build complete in {time.monotonic() - t0:.0f}s")
    return 0


def cmd_up(_args) -> int:
    t0 = time.monotonic()
    host, ours = engine.ensure()
    healthy = False
    if gobuild.built():
        kind = _kind(host)
        if kind.exists():
            kind.export_kubeconfig()
            healthy, why = kind.health()
            if healthy and not kind.config_current():
                healthy, why = False, "made with another kind configuration"
            if not healthy:
                log(f"cluster present but not healthy ({why}); recreating")
                kind.delete()
    else:
        log("first run: building kind, Kubernetes and the node image from source "
            "(about 30 min on 2 cores, more for Docker Model Runner's llama-server and the model "
            "registry; cached afterwards)")
    b = gobuild.binaries()
    if not healthy:
        b, published, base = build_all(host)
        kind = _kind(host)
        image = published or nodeimage.build_node(host, b, base)
        kind.create(image, default_cni=published is not None)
    elif not kind.has_kindnet():
        kind.rewire()  # a node restarted since (docker start) lost its routes and rules
    kind.wait_ready()
    if not kind.has_kindnet():
        netpol.install(kind, host, NODE_NAMES)
    (RUN_DIR / "docker-host").write_text(host + "\n")
    preload, chatbot = stackimages.build_all(host, b["metrics-server"])
    localmodel.up(host)
    t1 = time.monotonic()
    from .images import load_into_nodes
    load_into_nodes(host, preload, NODE_NAMES)
    log(f"loaded into every node ({time.monotonic() - t1:.0f}s): {', '.join(preload)}")
    log(f"in the local image store for the chatbot role to load: {', '.join(chatbot)}")
    print(kind.kubectl("get", "nodes", "-o", "wide").stdout, end="", flush=True)
    mem = cluster.node_memory(host)
    log("memory per node: " + ", ".join(f"{k} {v.split(' /')[0]}" for k, v in sorted(mem.items())))
    log(f"kind cluster up in {time.monotonic() - t0:.0f}s; context {CONTEXT}. To use it:")
    for line in cluster.env_lines(host, ours):
        print(line, flush=True)
    return 0


def cmd_down(_args) -> int:
    t0 = time.monotonic()
    host, ours = engine.find()
    if host:
        kind = _kind(host)
        localmodel.remove(host)
        kind.delete()
        if ours:
            kind.remove_network()
            engine.stop()
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    if host and not ours:
        log(f"down in {time.monotonic() - t0:.0f}s (the Docker engine at {host} is not ours; "
            "left running)")
        return 0
    left = engine.leftovers()
    if left:
        log("left behind:\n  " + "\n  ".join(left))
        return 1
    log(f"down in {time.monotonic() - t0:.0f}s; no process, mount, bridge, iptables rule or "
        "cgroup of ours is left")
    return 0


def cmd_status(_args) -> int:
    if not gobuild.built():
        log("not built yet (make kind-up builds it)")
        return 1
    host, _ = engine.find()
    if not host:
        log("no Docker engine running")
        return 1
    kind = _kind(host)
    if not kind.exists():
        log(f"no kind cluster {CONTEXT}")
        return 1
    if not KUBECONFIG.exists():
        kind.export_kubeconfig()
    ok, why = kind.health()
    if ok and localmodel.address(host) is None:
        ok, why = False, f"the model registry {localmodel.CONTAINER} is not running (`up` starts it)"
    log(why)
    return 0 if ok else 1


def cmd_rewire(_args) -> int:
    """After `docker start` of a stopped node: its routes, forwarding and filter rules are gone
    (a container's network namespace is new on every start) and its address may have changed."""
    host, _ = engine.find()
    if not host:
        die("no Docker engine running: run `make kind-up` first")
    kind = _kind(host)
    if kind.has_kindnet():
        log("kindnetd wires the pod network itself; nothing to do")
        return 0
    kind.rewire()
    return 0


def cmd_vars(_args) -> int:
    print(json.dumps(localmodel.deploy_vars()))
    return 0


def cmd_env(_args) -> int:
    host, ours = engine.find()
    if not host:
        die("no Docker engine running: run `make kind-up` first")
    for line in cluster.env_lines(host, ours):
        print(line)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kindcluster", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("build", "up", "down", "status", "env", "rewire", "vars"):
        sub.add_parser(name)
    args = p.parse_args(argv)
    return {"build": cmd_build, "up": cmd_up, "down": cmd_down, "status": cmd_status,
            "env": cmd_env, "rewire": cmd_rewire, "vars": cmd_vars}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
