"""The cluster itself: create it with kwokctl from the built binaries, apply the nodes and the
StorageClass, start the provisioner, check health, delete it and everything it left; and the
settings (kubeconfig, context, tool paths) that reach it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .build import Plan, build, mod_download, pinned_binary
from .common import (CLUSTER_NAME, CONF_DIR, CONTEXT, KUBECONFIG, KWOK_WORKDIR, NODE_NAMES,
                     PROV_LOG, PROV_PID, RUN_DIR, die, log)
from .manifests import node_manifests, storage_manifests
from .processes import (pid_alive, read_pid, read_pid_dir, start_provisioner, stop_pid,
                        wait_exited, wait_reaped)


def env() -> dict[str, str]:
    """The settings that reach the cluster and the tools built for it (what `env` exports)."""
    return {
        "KUBECONFIG": str(KUBECONFIG),
        "K8S_AUTH_KUBECONFIG": str(KUBECONFIG),
        "K8S_AUTH_CONTEXT": CONTEXT,
        "TESTCLUSTER_HELM": str(pinned_binary("helm")),
        "TESTCLUSTER_KWOKCTL": str(pinned_binary("kwokctl")),
    }


def kwok_env() -> dict:
    env = dict(os.environ)
    env["KWOK_WORKDIR"] = str(KWOK_WORKDIR)
    env.pop("KUBECONFIG", None)
    return env


def cluster_dir() -> Path:
    return KWOK_WORKDIR / "clusters" / CLUSTER_NAME


def kubectl(*args, check=True, capture=True, input_text=None, timeout=60):
    cmd = ["kubectl", f"--kubeconfig={KUBECONFIG}", f"--context={CONTEXT}",
           f"--cache-dir={RUN_DIR / 'kubectl-cache'}", *args]
    r = subprocess.run(cmd, input=input_text, text=True, timeout=timeout,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        die(f"kubectl {' '.join(args)} failed: {(r.stderr or '').strip()}")
    return r


def kubectl_json(*args):
    r = kubectl(*args, "-o", "json", check=False, timeout=20)
    if r.returncode != 0:
        return None
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return None


def health() -> tuple[bool, str]:
    """(healthy, reason) without side effects."""
    if not KUBECONFIG.exists():
        return False, "no kubeconfig (cluster not up)"
    r = kubectl("get", "--raw=/readyz", check=False, timeout=10)
    if r.returncode != 0 or r.stdout.strip() != "ok":
        return False, "kube-apiserver not ready"
    nodes = kubectl_json("get", "nodes") or {}
    ready = set()
    for n in nodes.get("items", []):
        for c in n.get("status", {}).get("conditions", []):
            if c.get("type") == "Ready" and c.get("status") == "True":
                ready.add(n["metadata"]["name"])
    missing = [n for n in NODE_NAMES if n not in ready]
    if missing:
        return False, f"nodes not Ready: {', '.join(missing)}"
    if kubectl_json("get", "serviceaccount", "default", "-n", "default") is None:
        return False, "default ServiceAccount missing"
    api = kubectl_json("get", "apiservice", "v1beta1.metrics.k8s.io") or {}
    if not any(c.get("type") == "Available" and c.get("status") == "True"
               for c in api.get("status", {}).get("conditions", [])):
        return False, "APIService v1beta1.metrics.k8s.io not Available"
    if kubectl_json("get", "storageclass", "standard") is None:
        return False, "StorageClass standard missing"
    pid = read_pid(PROV_PID)
    if not pid or not pid_alive(pid):
        return False, "provisioner not running"
    return True, "healthy"


def render_kwokctl_config(plan: Plan) -> Path:
    text = (CONF_DIR / "kwokctl.yaml").read_text()
    text = (text.replace("@KUBE_VERSION@", plan.v["kubernetes"].lstrip("v"))
                .replace("@ETCD_VERSION@", plan.etcd_version().lstrip("v"))
                .replace("@METRICS_SERVER_VERSION@", plan.v["metrics_server"].lstrip("v")))
    ms_dir = mod_download(f"sigs.k8s.io/metrics-server@{plan.v['metrics_server']}")["Dir"]
    kubectl_bin = shutil.which("kubectl")
    if not kubectl_bin:
        die("kubectl not found on PATH")
    text = (text.replace("@METRICS_SERVER_MANIFESTS@", f"{ms_dir}/manifests/overlays/release")
                .replace("@KUBECTL@", kubectl_bin))
    out = RUN_DIR / "kwokctl.yaml"
    out.write_text(text)
    return out


def print_summary(t0: float | None = None) -> None:
    log(f"kubeconfig: {KUBECONFIG}")
    log(f"context:    {CONTEXT}")
    r = kubectl("get", "nodes", "-o", "wide", check=False)
    print(r.stdout, end="")
    if t0 is not None:
        log(f"up in {time.monotonic() - t0:.1f}s")


def up() -> None:
    """Reuse a healthy cluster (restarting the provisioner if that is all it lacks), else build
    what is missing, recreate the cluster and wait until it is healthy."""
    t0 = time.monotonic()
    ok, why = health()
    if not ok and why == "provisioner not running":
        log("restarting the provisioner")
        start_provisioner(Plan().binaries()["provisioner"])
        ok, why = health()
    if ok:
        log("cluster already up and healthy")
        print_summary()
        return
    plan = Plan()
    if not plan.built():
        build(plan)
    b = plan.binaries()
    if cluster_dir().exists() or KUBECONFIG.exists():
        log(f"cluster present but not healthy ({why}); recreating")
        down()
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    (RUN_DIR / ".gitignore").write_text("*\n")
    conf = render_kwokctl_config(plan)
    cmd = [str(b["kwokctl"]), "create", "cluster", f"--name={CLUSTER_NAME}",
           f"--kubeconfig={KUBECONFIG}",
           "-c", str(conf), "-c", str(CONF_DIR / "stages.yaml"),
           "-c", str(CONF_DIR / "usage.yaml"),
           "--runtime=binary",
           f"--kube-apiserver-binary={b['kube-apiserver']}",
           f"--kube-controller-manager-binary={b['kube-controller-manager']}",
           f"--kube-scheduler-binary={b['kube-scheduler']}",
           f"--etcd-binary={b['etcd']}",
           f"--kwok-controller-binary={b['kwok']}",
           f"--metrics-server-binary={b['metrics-server']}",
           "--timeout=5m"]
    log("creating cluster: " + " ".join(cmd[:3]) + " ...")
    t1 = time.monotonic()
    r = subprocess.run(cmd, env=kwok_env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (RUN_DIR / "kwokctl-create.log").write_text(r.stdout)
    if r.returncode != 0:
        sys.stderr.write(r.stdout)
        log("kwokctl create cluster failed; cleaning up")
        down()
        die("kwokctl create cluster failed (output above)")
    log(f"control plane up in {time.monotonic() - t1:.1f}s")
    kubectl("config", "use-context", CONTEXT)
    objs = node_manifests(plan.v["kubernetes"], plan.v["kwok"]) + storage_manifests()
    kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List",
                                                        "items": objs}))
    start_provisioner(b["provisioner"])
    deadline = time.monotonic() + 300
    last = ""
    while True:
        ok, why = health()
        if ok:
            break
        if why != last:
            log(f"waiting: {why}")
            last = why
        if time.monotonic() > deadline:
            die(f"cluster did not become healthy in time: {why} "
                f"(logs: {cluster_dir() / 'logs'}, {PROV_LOG}); "
                f"left running for inspection, remove with `down`")
        time.sleep(1)
    print_summary(t0)


def control_plane(action: str) -> None:
    """`stop` or `start` the cluster's components (kwokctl stop/start cluster): the API server
    goes away and comes back with its data, for the fault tests. The provisioner outside kwokctl
    keeps running and reconnects."""
    if action not in ("stop", "start"):
        die(f"unknown control-plane action {action}")
    r = subprocess.run([str(pinned_binary("kwokctl")), action, "cluster", f"--name={CLUSTER_NAME}"],
                       env=kwok_env(), capture_output=True, text=True)
    if r.returncode != 0:
        die(f"kwokctl {action} cluster failed: {r.stderr.strip()}")
    if action == "start":
        for _ in range(120):
            ok, why = health()
            if ok:
                break
            time.sleep(0.5)
        else:
            die(f"the cluster did not come back after start: {why}")
    log(f"control plane {action}ped" if action == "stop" else "control plane started and healthy")


def down() -> None:
    """Delete the cluster, stop every process it started, remove the runtime files."""
    t0 = time.monotonic()
    # 1. provisioner
    pid = read_pid(PROV_PID)
    if pid:
        stop_pid(pid, ("hostpath-provisioner",), "provisioner")
    # 2. kwokctl cluster; remember its pids first in case delete leaves any behind
    pids = read_pid_dir(cluster_dir() / "pids")
    kwokctl = pinned_binary("kwokctl")
    if cluster_dir().exists() and kwokctl.exists():
        r = subprocess.run([str(kwokctl), "delete", "cluster", f"--name={CLUSTER_NAME}",
                            f"--kubeconfig={KUBECONFIG}"], env=kwok_env(),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout)
            log("kwokctl delete cluster failed; stopping its processes directly")
    # kwokctl signals its processes without waiting for them; wait for them to exit
    # (a process that is exiting has an empty command line), then stop stragglers.
    wait_exited(pids.values(), 30)
    for name, p in pids.items():
        stop_pid(p, (str(cluster_dir()),), name)
    # Exited daemons are re-parented to PID 1; give it a moment to reap them so
    # `ps` shows nothing left (a zombie holds no port or file, only a pid).
    left = wait_reaped(list(pids.values()) + ([pid] if pid else []), 10)
    if left:
        log(f"note: exited processes not yet reaped by their parent: {left}")
    # 3. runtime files
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    log(f"down in {time.monotonic() - t0:.1f}s")
