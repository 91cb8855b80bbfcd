"""NetworkPolicy enforcement for the offline kind cluster: kube-network-policies.

kind's own CNI, kindnetd, enforces NetworkPolicy with sigs.k8s.io/kube-network-policies, but
kindnetd is not on the Go module proxy, so the offline cluster wires pods with the bridge plugin
(cluster.py) and runs kube-network-policies on its own, as its README describes: a DaemonSet in
kube-system, built here from the pinned module.

One change to upstream, applied to a copy of the module: kube-network-policies hands packets to
its NFQUEUE with nftables' `queue` statement, which needs the kernel's nft_queue; the kernels of
the machines this is tested on lack it (CONFIG_NFT_QUEUE is not set) but have the xtables NFQUEUE
target. files/kube-network-policies/queue_compat.go picks the native statement when the kernel
takes it and the NFQUEUE target otherwise; every `queue` statement is routed through it.
"""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import yaml

from . import images
from .common import FILES, die, log, run, versions
from testcluster import build as sim

MODULE = "sigs.k8s.io/kube-network-policies"
COMPAT = FILES / "kube-network-policies" / "queue_compat.go"
NAMESPACE = "kube-system"
NAME = "kube-network-policies"
# (file, pattern, replacement, expected matches): a new upstream version that no longer matches
# stops the build instead of building an unpatched binary.
PATCHES = [
    ("pkg/networkpolicy/controller.go",
     r"queue := &expr\.Queue\{Num: uint16\(c\.config\.QueueID\)\}\s*"
     r"if c\.config\.FailOpen \{\s*queue\.Flag = expr\.QueueFlagBypass\s*\}",
     "queue := queueExpr(uint16(c.config.QueueID), c.config.FailOpen)", 2),
    ("pkg/networkpolicy/dnsagent.go",
     r"&expr\.Queue\{Num: uint16\(n\.nfQueueID\), Flag: expr\.QueueFlagBypass\}",
     "queueExpr(uint16(n.nfQueueID), true)", 1),
]


def _key() -> str:
    h = hashlib.sha256(COMPAT.read_bytes())
    h.update(repr(PATCHES).encode())
    return h.hexdigest()[:12]


def version() -> str:
    return versions()["kube_network_policies"]


def binary() -> Path:
    return sim.bin_path(NAME, f"{version()}-{_key()}", "netpol")


def image_tag() -> str:
    return f"ai-stack.local/{NAME}:{version()}-{_key()}"


def build() -> Path:
    out = binary()
    if out.exists():
        log(f"{NAME}: cached ({out})")
        return out
    src = Path(sim.mod_download(f"{MODULE}@{version()}")["Dir"])
    d = sim.CACHE / "src" / f"{NAME}-{version()}-{_key()}"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    for p in [d, *d.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)  # the module cache is read-only
    for rel, pattern, repl, count in PATCHES:
        f = d / rel
        text, n = re.subn(pattern, repl, f.read_text())
        if n != count:
            die(f"{NAME} {version()}: {rel} has {n} match(es) of the queue statement, "
                f"expected {count}; update PATCHES in {__file__}")
        f.write_text(text)
    shutil.copy(COMPAT, d / "pkg" / "networkpolicy" / COMPAT.name)
    sim.go_build(out, "./cmd", "-s -w", d, f"{NAME} {version()} (patched: queue_compat.go)")
    return out


def build_image(host: str) -> str:
    tag = image_tag()
    if not images.image_id(host, tag):
        images.scratch_binary(
            host, tag, build(), "/bin/netpol", entrypoint=None,
            comment=f"{NAME} {version()} built from source; patched to queue packets through the "
                    "xtables NFQUEUE target where the kernel lacks nft_queue")
    return tag


def manifests(tag: str) -> list[dict]:
    """Upstream's install.yaml with our image, and NRI off (Debian's containerd 1.6 has no NRI:
    pod addresses come from the API server instead)."""
    src = Path(sim.mod_download(f"{MODULE}@{version()}")["Dir"]) / "install.yaml"
    docs = [d for d in yaml.safe_load_all(src.read_text()) if d]
    for d in docs:
        if d["kind"] == "DaemonSet":
            spec = d["spec"]["template"]["spec"]
            c = spec["containers"][0]
            c["image"] = tag
            c["imagePullPolicy"] = "Never"
            c["args"] = [a for a in c["args"] if not a.startswith("--disable-nri")] + ["--disable-nri"]
            c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "nri-plugin"]
            spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "nri-plugin"]
    return docs


def install(kind, host: str, nodes: list[str]) -> None:
    """Build, load and apply the DaemonSet; wait until it runs on every node."""
    tag = build_image(host)
    images.load_into_nodes(host, [tag], nodes)
    kind.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=kindcluster",
                 "-f", "-", input_text=yaml.safe_dump_all(manifests(tag)))
    r = kind.kubectl("-n", NAMESPACE, "rollout", "status", f"daemonset/{NAME}", "--timeout=120s",
                     check=False, timeout=150)
    if r.returncode != 0:
        kind.dump(NAMESPACE)
        die(f"daemonset {NAMESPACE}/{NAME} did not become ready: {r.stderr.strip()}")
    log(f"NetworkPolicy: {NAME} {version()} on every node")
