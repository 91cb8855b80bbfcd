"""Go binaries of the simulated cluster, built from the Go module proxy into the build cache.

Versions are pinned in versions.json; etcd's is the one k8s.io/kubernetes's go.mod requires. The
Kubernetes binaries and etcd are built in a wrapper module that maps Kubernetes' staging modules
to their published versions; kwok, kwokctl, metrics-server and helm each in a throw-away module
that requires theirs; the hostpath provisioner from provisioner/main.go. tools/kindcluster builds
its binaries with these functions, into the same cache.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from .common import CACHE, CONF_DIR, die, load_versions, log

# The binaries whose version versions.json pins directly, with the key that pins it.
PINNED = {"kwok": "kwok", "kwokctl": "kwok", "metrics-server": "metrics_server", "helm": "helm"}


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


def pinned_binary(name: str, versions: dict | None = None) -> Path:
    """Where `build` puts kwok, kwokctl, metrics-server or helm, built or not (no network)."""
    v = load_versions() if versions is None else versions
    return bin_path(name, v[PINNED[name]])


def etcd_from_gomod(gomod: str) -> str:
    """The etcd server version that k8s.io/kubernetes's go.mod requires."""
    m = re.search(r"^\s*go\.etcd\.io/etcd/server/v3\s+(v\S+)", gomod, re.M)
    if not m:
        die("cannot find go.etcd.io/etcd/server/v3 in k8s.io/kubernetes go.mod")
    return m.group(1)


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
                self._etcd = etcd_from_gomod(Path(self.k8s_mod()["GoMod"]).read_text())
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
            **{name: pinned_binary(name, v) for name in PINNED},
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


def helm_ldflags(version: str, helm_gomod: str) -> str:
    """Like helm's Makefile: the default .Capabilities.KubeVersion (helm template/lint) is the
    version of the k8s modules helm is built with."""
    m = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", helm_gomod, re.M)
    kminor = m.group(1) if m else "20"
    flags = (f"-s -w -X helm.sh/helm/v3/internal/version.version={version}"
             " -X helm.sh/helm/v3/internal/version.gitTreeState=clean")
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += f" -X {pkg}.k8sVersionMajor=1 -X {pkg}.k8sVersionMinor={kminor}"
    return flags


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


def wrapper_gomod(gomod: str, kubernetes: str, etcd: str) -> str:
    """go.mod of a module that requires k8s.io/kubernetes (whose go.mod is `gomod`) and maps its
    staging modules to their published versions (kubernetes/kubernetes#79384)."""
    staging = re.findall(r"^\s*(k8s\.io/[\w.\-/]+)\s+=>\s+\./staging/", gomod, re.M)
    if not staging:
        die("no staging replace directives found in k8s.io/kubernetes go.mod")
    go_line = re.search(r"^go\s+(\S+)", gomod, re.M).group(1)
    godebug = re.findall(r"^godebug\s+.*$", gomod, re.M)
    pub = "v0" + kubernetes[kubernetes.index("."):]  # v1.34.4 -> v0.34.4
    lines = ["module testcluster.local/k8s-wrapper", "", f"go {go_line}", ""]
    lines += godebug + [""]
    lines += ["require (", f"\tk8s.io/kubernetes {kubernetes}",
              f"\tgo.etcd.io/etcd/server/v3 {etcd}", ")", "", "replace ("]
    lines += [f"\t{m} => {m} {pub}" for m in staging]
    lines += [")", ""]
    return "\n".join(lines)


def k8s_wrapper(plan: Plan) -> Path:
    """The Kubernetes wrapper module's folder (see wrapper_gomod), written if needed."""
    k = plan.v["kubernetes"]
    gomod = wrapper_gomod(Path(plan.k8s_mod()["GoMod"]).read_text(), k, plan.etcd_version())
    d = CACHE / "src" / f"k8s-wrapper-{k}"
    write_if_changed(d / "go.mod", gomod)
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
    kv = v["kwok"].lstrip("v")
    kwok_ld = ("-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=" + kv +
               " -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=" + k.lstrip("v") +
               " -X sigs.k8s.io/kwok/pkg/consts.PreRelease=GA")
    build_module_binary("kwok", "sigs.k8s.io/kwok", v["kwok"], "sigs.k8s.io/kwok/cmd/kwok",
                        b["kwok"], kwok_ld)
    build_module_binary("kwokctl", "sigs.k8s.io/kwok", v["kwok"],
                        "sigs.k8s.io/kwok/cmd/kwokctl", b["kwokctl"], kwok_ld)
    ms = v["metrics_server"]
    build_module_binary("metrics-server", "sigs.k8s.io/metrics-server", ms,
                        "sigs.k8s.io/metrics-server/cmd/metrics-server", b["metrics-server"],
                        f"-s -w -X k8s.io/client-go/pkg/version.gitVersion={ms}")
    if not b["helm"].exists():
        hmod = Path(mod_download(f"helm.sh/helm/v3@{v['helm']}")["GoMod"]).read_text()
        build_module_binary("helm", "helm.sh/helm/v3", v["helm"], "helm.sh/helm/v3/cmd/helm",
                            b["helm"], helm_ldflags(v["helm"], hmod))
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


class BuildLock:
    """Serialise concurrent builds sharing one cache."""

    def __enter__(self):
        CACHE.mkdir(parents=True, exist_ok=True)
        self.f = open(CACHE / ".build.lock", "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()
