#!/usr/bin/env python3
"""Local test cluster: a real Kubernetes control plane with KWOK-simulated nodes.

Components (all built from Go modules, pinned in tools/testcluster/versions.json):
  etcd, kube-apiserver, kube-controller-manager, kube-scheduler  (real)
  kwok + kwokctl                                                 (fake nodes/pods)
  metrics-server                                                 (real, scrapes kwok)
  helm                                                           (built for later use)
  hostpath provisioner (tools/testcluster/provisioner, sig-storage-lib-external-provisioner)

Usage:
  python tools/testcluster.py build    # build once (cached)
  python tools/testcluster.py plan     # list the binaries build makes and whether they exist
  python tools/testcluster.py up       # build if needed, start cluster, wait healthy
  python tools/testcluster.py status   # exit 0 if up and healthy
  python tools/testcluster.py env      # print export lines (KUBECONFIG, K8S_AUTH_*)
  python tools/testcluster.py down     # delete cluster, stop all processes

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
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
REPO = TOOLS_DIR.parent
CONF_DIR = TOOLS_DIR / "testcluster"
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


# --------------------------------------------------------------------------- build

def go_env() -> dict:
    env = dict(os.environ)
    env["GOMODCACHE"] = str(CACHE / "gomod")
    env["GOCACHE"] = str(CACHE / "gocache")
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = " ".join(
        f for f in (env.get("GOFLAGS", "") + " -mod=mod -buildvcs=false").split() if f)
    env.pop("GOBIN", None)
    env.pop("GOWORK", None)
    env["GOWORK"] = "off"
    return env


def run(cmd, *, env=None, cwd=None, check=True, capture=False, timeout=None):
    r = subprocess.run(cmd, env=env, cwd=cwd, timeout=timeout, text=True,
                       stdout=subprocess.PIPE if capture else None,
                       stderr=subprocess.PIPE if capture else None)
    if check and r.returncode != 0:
        if capture:
            sys.stderr.write(r.stdout or "")
            sys.stderr.write(r.stderr or "")
        die(f"command failed ({r.returncode}): {' '.join(map(str, cmd))}")
    return r


def mod_download(path_at_version: str) -> dict:
    # `go` needs an existing working directory; on a fresh machine the cache is not there yet.
    CACHE.mkdir(parents=True, exist_ok=True)
    r = run(["go", "mod", "download", "-json", path_at_version], env=go_env(),
            cwd=CACHE, capture=True)
    return json.loads(r.stdout)


def bin_path(component: str, version: str, binary: str | None = None) -> Path:
    return CACHE / "bin" / f"{component}-{version}" / (binary or component)


class Plan:
    """Everything `build` produces, with the binary paths `up` needs."""

    def __init__(self) -> None:
        self.v = load_versions()
        self._k8s_mod: dict | None = None
        self._etcd: str | None = None

    # The k8s go.mod is tiny and `go mod download` of a cached module is instant.
    def k8s_mod(self) -> dict:
        if self._k8s_mod is None:
            self._k8s_mod = mod_download(f"k8s.io/kubernetes@{self.v['kubernetes']}")
        return self._k8s_mod

    def etcd_version(self) -> str:
        if self._etcd is None:
            cache = CACHE / "bin" / f"etcd-for-k8s-{self.v['kubernetes']}.txt"
            if cache.exists():
                self._etcd = cache.read_text().strip()
            else:
                gomod = Path(self.k8s_mod()["GoMod"]).read_text()
                m = re.search(r"^\s*go\.etcd\.io/etcd/server/v3\s+(v\S+)", gomod, re.M)
                if not m:
                    die("cannot find go.etcd.io/etcd/server/v3 in k8s.io/kubernetes go.mod")
                self._etcd = m.group(1)
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(self._etcd + "\n")
        return self._etcd

    def binaries(self) -> dict[str, Path]:
        v = self.v
        k = v["kubernetes"]
        return {
            "etcd": bin_path("etcd", self.etcd_version()),
            "kube-apiserver": bin_path("kube-apiserver", k),
            "kube-controller-manager": bin_path("kube-controller-manager", k),
            "kube-scheduler": bin_path("kube-scheduler", k),
            "kwok": bin_path("kwok", v["kwok"]),
            "kwokctl": bin_path("kwokctl", v["kwok"]),
            "metrics-server": bin_path("metrics-server", v["metrics_server"]),
            "helm": bin_path("helm", v["helm"]),
            "provisioner": bin_path(
                "hostpath-provisioner",
                f"{v['sig_storage_lib_external_provisioner']}-{provisioner_src_hash()}"),
        }

    def built(self) -> bool:
        try:
            return all(p.exists() for p in self.binaries().values())
        except SystemExit:
            return False


def provisioner_src_hash() -> str:
    import hashlib
    h = hashlib.sha256((CONF_DIR / "provisioner" / "main.go").read_bytes())
    return h.hexdigest()[:10]


def k8s_ldflags(version: str) -> str:
    m = re.match(r"v(\d+)\.(\d+)\.", version)
    major, minor = m.group(1), m.group(2)
    flags = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}",
                  f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                  f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(flags)


def go_build(out: Path, pkg: str, ldflags: str, cwd: Path, label: str) -> None:
    if out.exists():
        log(f"{label}: cached ({out})")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    t0 = time.monotonic()
    log(f"{label}: building {pkg} ...")
    run(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp), pkg],
        env=go_env(), cwd=cwd)
    tmp.rename(out)
    log(f"{label}: built in {time.monotonic() - t0:.0f}s -> {out} "
        f"({out.stat().st_size // (1 << 20)} MiB)")


def write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def k8s_wrapper(plan: Plan) -> Path:
    """A module that requires k8s.io/kubernetes and maps its staging modules to
    their published versions (kubernetes/kubernetes#79384)."""
    k = plan.v["kubernetes"]
    gomod = Path(plan.k8s_mod()["GoMod"]).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s+=>\s+\./staging/", gomod, re.M)
    if not staging:
        die("no staging replace directives found in k8s.io/kubernetes go.mod")
    go_line = re.search(r"^go\s+(\S+)", gomod, re.M).group(1)
    godebug = re.findall(r"^godebug\s+.*$", gomod, re.M)
    pub = "v0" + k[k.index("."):]  # v1.34.4 -> v0.34.4
    lines = ["module testcluster.local/k8s-wrapper", "", f"go {go_line}", ""]
    lines += godebug + [""]
    lines += ["require (", f"\tk8s.io/kubernetes {k}",
              f"\tgo.etcd.io/etcd/server/v3 {plan.etcd_version()}", ")", "", "replace ("]
    lines += [f"\t{m} => {m} {pub}" for m in staging]
    lines += [")", ""]
    d = CACHE / "src" / f"k8s-wrapper-{k}"
    write_if_changed(d / "go.mod", "\n".join(lines))
    return d


def build_module_binary(label: str, mod: str, ver: str, pkg: str, out: Path,
                        ldflags: str) -> None:
    """Build `pkg` of module `mod` at `ver` in a throw-away module that requires it
    (for modules without replace directives). Shared with tools/kindcluster."""
    if out.exists():
        log(f"{label}: cached ({out})")
        return
    d = CACHE / "src" / f"{label}-{ver}"
    write_if_changed(d / "go.mod",
                     f"module testcluster.local/{label}\n\ngo 1.24\n\nrequire {mod} {ver}\n")
    go_build(out, pkg, ldflags, d, label)


def build(plan: Plan) -> None:
    with BuildLock():
        _build(plan)


def _build(plan: Plan) -> None:
    t_all = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    b = plan.binaries()
    v = plan.v
    k = v["kubernetes"]
    if not all(b[n].exists() for n in ("etcd", "kube-apiserver",
                                       "kube-controller-manager", "kube-scheduler")):
        w = k8s_wrapper(plan)
        ld = k8s_ldflags(k)
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            go_build(b[name], f"k8s.io/kubernetes/cmd/{name}", ld, w, name)
        go_build(b["etcd"], "go.etcd.io/etcd/server/v3", "-s -w", w,
                 f"etcd {plan.etcd_version()}")

    # kwok/kwokctl, metrics-server, helm: no replace directives.
    simple = build_module_binary
    kv = v["kwok"].lstrip("v")
    kwok_ld = ("-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=" + kv +
               " -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=" + k.lstrip("v") +
               " -X sigs.k8s.io/kwok/pkg/consts.PreRelease=GA")
    simple("kwok", "sigs.k8s.io/kwok", v["kwok"], "sigs.k8s.io/kwok/cmd/kwok",
           b["kwok"], kwok_ld)
    simple("kwokctl", "sigs.k8s.io/kwok", v["kwok"], "sigs.k8s.io/kwok/cmd/kwokctl",
           b["kwokctl"], kwok_ld)
    ms = v["metrics_server"]
    simple("metrics-server", "sigs.k8s.io/metrics-server", ms,
           "sigs.k8s.io/metrics-server/cmd/metrics-server", b["metrics-server"],
           f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={ms}")
    if not b["helm"].exists():
        # Like helm's Makefile: default .Capabilities.KubeVersion (helm template/lint)
        # is the version of the k8s modules helm is built with.
        hmod = Path(mod_download(f"helm.sh/helm/v3@{v['helm']}")["GoMod"]).read_text()
        m = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", hmod, re.M)
        kminor = m.group(1) if m else "20"
        helm_ld = (f"-s -w -X helm.sh/helm/v3/internal/version.version={v['helm']}"
                   " -X helm.sh/helm/v3/internal/version.gitTreeState=clean")
        for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
            helm_ld += f" -X {pkg}.k8sVersionMajor=1 -X {pkg}.k8sVersionMinor={kminor}"
        simple("helm", "helm.sh/helm/v3", v["helm"], "helm.sh/helm/v3/cmd/helm",
               b["helm"], helm_ld)
    else:
        log(f"helm: cached ({b['helm']})")

    # Hostpath provisioner: our small main.go on top of the maintained library.
    out = plan.binaries()["provisioner"]  # keyed by main.go's hash
    if out.exists():
        log(f"hostpath-provisioner: cached ({out})")
    else:
        lv = v["sig_storage_lib_external_provisioner"]
        d = CACHE / "src" / f"hostpath-provisioner-{lv}"
        write_if_changed(d / "go.mod",
                         "module testcluster.local/hostpath-provisioner\n\ngo 1.24\n\n"
                         f"require sigs.k8s.io/sig-storage-lib-external-provisioner/v13 {lv}\n")
        write_if_changed(d / "main.go", (CONF_DIR / "provisioner" / "main.go").read_text())
        go_build(out, ".", "-s -w", d, "hostpath-provisioner")
    log(f"build complete in {time.monotonic() - t_all:.0f}s")


def cmd_build(_args) -> int:
    build(Plan())
    return 0


class BuildLock:
    """Serialise concurrent builds sharing one cache."""

    def __enter__(self):
        import fcntl
        CACHE.mkdir(parents=True, exist_ok=True)
        self.f = open(CACHE / ".build.lock", "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()


# --------------------------------------------------------------------------- cluster

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


def quantity_env(name: str, default: str) -> str:
    v = os.environ.get(name, "").strip() or default
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?", v):
        die(f"{name}={v!r} is not a Kubernetes quantity")
    return v


def node_manifests(kube_version: str, kwok_version: str) -> list[dict]:
    cpu = quantity_env("TESTCLUSTER_WORKER_CPU", "4")
    mem = quantity_env("TESTCLUSTER_WORKER_MEMORY", "8Gi")
    pods = quantity_env("TESTCLUSTER_WORKER_PODS", "110")
    cp_cpu = quantity_env("TESTCLUSTER_CONTROL_PLANE_CPU", cpu)
    cp_mem = quantity_env("TESTCLUSTER_CONTROL_PLANE_MEMORY", mem)
    nodes = []
    for i, name in enumerate(NODE_NAMES):
        control = name.endswith("control-plane")
        labels = {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/os": "linux",
            "kubernetes.io/hostname": name,
            "type": "kwok",
        }
        spec: dict = {"podCIDR": f"10.244.{i}.0/24", "podCIDRs": [f"10.244.{i}.0/24"]}
        if control:
            labels["node-role.kubernetes.io/control-plane"] = ""
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
            spec["taints"] = [{"key": "node-role.kubernetes.io/control-plane",
                               "effect": "NoSchedule"}]
        ids = uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{CLUSTER_NAME}.testcluster.local")
        res = {"cpu": cp_cpu if control else cpu, "memory": cp_mem if control else mem,
               "pods": pods, "ephemeral-storage": "100Gi"}
        nodes.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": labels,
                "annotations": {
                    "kwok.x-k8s.io/node": "fake",
                    "node.alpha.kubernetes.io/ttl": "0",
                    "metrics.k8s.io/resource-metrics-path":
                        f"/metrics/nodes/{name}/metrics/resource",
                },
            },
            "spec": spec,
            # Nodes accept status on create; kwok's node-initialize stage keeps it.
            "status": {
                "allocatable": res,
                "capacity": dict(res),
                "nodeInfo": {
                    "architecture": "amd64",
                    "operatingSystem": "linux",
                    "kubeletVersion": kube_version,
                    "kubeProxyVersion": kube_version,
                    "osImage": "Debian GNU/Linux 12 (bookworm) [kwok fake node]",
                    "kernelVersion": f"kwok-{kwok_version}",
                    "containerRuntimeVersion": f"kwok-{kwok_version}",
                    "machineID": ids.hex, "systemUUID": str(ids), "bootID": str(ids),
                },
            },
        })
    return nodes


def storage_manifests() -> list[dict]:
    return [{
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": "standard",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER_NAME,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_pid(pid: int, must_contain: tuple[str, ...], label: str) -> None:
    """SIGTERM then SIGKILL one process we started (checked by its command line)."""
    if not pid_alive(pid):
        return
    cmd = pid_cmdline(pid)
    if not any(m in cmd for m in must_contain):
        log(f"not stopping pid {pid} ({label}): command line {cmd[:80]!r} is not ours")
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    log(f"{label} (pid {pid}) ignored SIGTERM; sending SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def start_provisioner(binary: Path) -> None:
    pid = read_pid(PROV_PID)
    if pid and pid_alive(pid) and str(binary) in pid_cmdline(pid):
        return
    pv_dir = RUN_DIR / "pv"
    pv_dir.mkdir(parents=True, exist_ok=True)
    logf = open(PROV_LOG, "ab")
    p = subprocess.Popen(
        [str(binary), f"--kubeconfig={KUBECONFIG}", f"--provisioner-name={PROVISIONER_NAME}",
         f"--base-dir={pv_dir}", "-v=2"],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True)
    logf.close()
    PROV_PID.write_text(f"{p.pid}\n")
    time.sleep(0.5)
    if p.poll() is not None:
        die(f"provisioner exited at once ({p.returncode}); see {PROV_LOG}")


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


def cmd_up(_args) -> int:
    t0 = time.monotonic()
    ok, why = health()
    if not ok and why == "provisioner not running":
        log("restarting the provisioner")
        start_provisioner(Plan().binaries()["provisioner"])
        ok, why = health()
    if ok:
        log("cluster already up and healthy")
        print_summary()
        return 0
    plan = Plan()
    if not plan.built():
        build(plan)
    b = plan.binaries()
    if cluster_dir().exists() or KUBECONFIG.exists():
        log(f"cluster present but not healthy ({why}); recreating")
        cmd_down(None)
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
        cmd_down(None)
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
    return 0


def cmd_down(_args) -> int:
    t0 = time.monotonic()
    # 1. provisioner
    pid = read_pid(PROV_PID)
    if pid:
        stop_pid(pid, ("hostpath-provisioner",), "provisioner")
    # 2. kwokctl cluster; remember its pids first in case delete leaves any behind
    pids = {}
    pid_dir = cluster_dir() / "pids"
    if pid_dir.is_dir():
        for f in pid_dir.glob("*.pid"):
            p = read_pid(f)
            if p:
                pids[f.stem] = p
    if cluster_dir().exists():
        plan = None
        try:
            plan = Plan()
            kwokctl = plan.binaries()["kwokctl"]
        except SystemExit:
            kwokctl = None
        if kwokctl and kwokctl.exists():
            r = subprocess.run([str(kwokctl), "delete", "cluster", f"--name={CLUSTER_NAME}",
                                f"--kubeconfig={KUBECONFIG}"], env=kwok_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                sys.stderr.write(r.stdout)
                log("kwokctl delete cluster failed; stopping its processes directly")
    # kwokctl signals its processes without waiting for them; wait for them to exit
    # (a process that is exiting has an empty command line), then stop stragglers.
    deadline = time.monotonic() + 30
    while any(pid_alive(p) for p in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, p in pids.items():
        stop_pid(p, (str(cluster_dir()),), name)
    # Exited daemons are re-parented to PID 1; give it a moment to reap them so
    # `ps` shows nothing left (a zombie holds no port or file, only a pid).
    all_pids = list(pids.values()) + ([pid] if pid else [])
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{p}").exists() for p in all_pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in all_pids if Path(f"/proc/{p}").exists()]
    if left:
        log(f"note: exited processes not yet reaped by their parent: {left}")
    # 3. runtime files
    if RUN_DIR.exists():
        shutil.rmtree(RUN_DIR, ignore_errors=True)
    log(f"down in {time.monotonic() - t0:.1f}s")
    return 0


def cmd_plan(_args) -> int:
    """Print what `build` would produce and whether it is built (resolves the module
    versions through the Go module proxy; creates the cache directory if needed)."""
    plan = Plan()
    for name, path in plan.binaries().items():
        print(f"{name}\t{path}\t{'built' if path.exists() else 'missing'}")
    return 0


def cmd_status(_args) -> int:
    ok, why = health()
    log(why)
    return 0 if ok else 1


def cmd_env(_args) -> int:
    plan = Plan()
    print(f"export KUBECONFIG={KUBECONFIG}")
    print(f"export K8S_AUTH_KUBECONFIG={KUBECONFIG}")
    print(f"export K8S_AUTH_CONTEXT={CONTEXT}")
    try:
        b = plan.binaries()
        print(f"export TESTCLUSTER_HELM={b['helm']}")
        print(f"export TESTCLUSTER_KWOKCTL={b['kwokctl']}")
    except SystemExit:
        pass
    return 0


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("build", "plan", "up", "down", "status", "env"):
        sub.add_parser(name)
    args = p.parse_args(argv)
    return {
        "build": cmd_build,
        "plan": cmd_plan,
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "env": cmd_env,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
