"""Go binaries of the kind cluster, built from the module proxy into the shared cache.

The Kubernetes binaries come from the same wrapper module and build cache as the simulated
cluster's (tools/testcluster), so kube-apiserver, kube-controller-manager, kube-scheduler and
etcd are built once for both.
"""
from __future__ import annotations

from pathlib import Path

from testcluster import build as sim
from .common import versions

K8S_NODE_BINARIES = ("kubelet", "kubeadm", "kube-proxy", "kubectl")
K8S_IMAGE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy")


def binaries() -> dict[str, Path]:
    v = versions()
    k = v["kubernetes"]
    plan = sim.Plan()
    b = {name: sim.bin_path(name, k) for name in
         set(K8S_NODE_BINARIES) | set(K8S_IMAGE_BINARIES)}
    b["etcd"] = plan.binaries()["etcd"]
    b["metrics-server"] = plan.binaries()["metrics-server"]
    b["kind"] = sim.bin_path("kind", v["kind"])
    b["coredns"] = sim.bin_path("coredns", v["coredns"])
    b["local-path-provisioner"] = sim.bin_path("local-path-provisioner",
                                               v["local_path_provisioner"])
    b["crictl"] = sim.bin_path("crictl", v["cri_tools"])
    return b


def built() -> bool:
    try:
        return all(p.exists() for p in binaries().values())
    except SystemExit:
        return False


def build() -> dict[str, Path]:
    """Build what is missing (the simulated cluster's binaries first: they are shared)."""
    plan = sim.Plan()
    with sim.BuildLock():
        sim._build(plan)  # etcd, kube-apiserver, ... metrics-server: shared, usually cached
        v = versions()
        k = v["kubernetes"]
        b = binaries()
        missing = [n for n in K8S_NODE_BINARIES + K8S_IMAGE_BINARIES if not b[n].exists()]
        if missing:
            w = sim.k8s_wrapper(plan)
            ld = sim.k8s_ldflags(k)
            for name in dict.fromkeys(missing):
                pkg = ("k8s.io/kubernetes/cmd/kubectl" if name == "kubectl"
                       else f"k8s.io/kubernetes/cmd/{name}")
                sim.go_build(b[name], pkg, ld, w, name)
        kind_ld = "-s -w"
        sim.build_module_binary("kind", "sigs.k8s.io/kind", v["kind"], "sigs.k8s.io/kind",
                                b["kind"], kind_ld)
        cv = v["coredns"]
        sim.build_module_binary(
            "coredns", "github.com/coredns/coredns", cv, "github.com/coredns/coredns",
            b["coredns"], f"-s -w -X github.com/coredns/coredns/coremain.GitCommit={cv}")
        lv = v["local_path_provisioner"]
        sim.build_module_binary(
            "local-path-provisioner", "github.com/rancher/local-path-provisioner", lv,
            "github.com/rancher/local-path-provisioner", b["local-path-provisioner"],
            f"-s -w -X main.VERSION={lv}")
        crv = v["cri_tools"]
        sim.build_module_binary(
            "crictl", "sigs.k8s.io/cri-tools", crv, "sigs.k8s.io/cri-tools/cmd/crictl",
            b["crictl"], f"-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version={crv}")
    return b
