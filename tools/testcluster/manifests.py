"""The objects `up` applies once kwokctl has started the control plane: the three KWOK nodes,
sized like Docker Desktop's (TESTCLUSTER_* variables), and the default StorageClass."""
from __future__ import annotations

import os
import re
import uuid

from .common import CLUSTER_NAME, NODE_NAMES, PROVISIONER_NAME, die


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
