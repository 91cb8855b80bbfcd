"""Filters for the cluster role: node summary and capacity preflight.

Quantities are parsed with the official Kubernetes client's
``kubernetes.utils.parse_quantity``; the placement check is a first-fit
decreasing packing of the planned pods onto the workers' free resources,
which is close to what the scheduler's resource fit does.

The client is imported when a quantity is first parsed, not when the plugin loads: Ansible
loads every filter plugin of the directory in each task's worker process that compiles a
template with a filter, and importing the Kubernetes client costs about 0.7 s here, which
made every such task 0.7 s slower (tests/test_filters.py keeps the import lazy).
"""

from decimal import Decimal

_GI = Decimal(1024**3)


def parse_quantity(value):
    """kubernetes.utils.parse_quantity, imported on first use."""
    from kubernetes.utils import parse_quantity as parse  # pylint: disable=import-outside-toplevel

    return parse(value)


def k8s_quantity(value):
    """Return a Kubernetes quantity ('500m', '4Gi', 2) as a float."""
    return float(parse_quantity(str(value)))


def _q(value):
    return parse_quantity(str(value)) if value not in (None, "") else Decimal(0)


def _fmt_cpu(value):
    return f"{int((value * 1000).to_integral_value())}m"


def _fmt_mem(value):
    return f"{(value / _GI):.2f}Gi"


def _pod_requests(pod):
    """Effective requests of a pod spec, as the scheduler computes them."""
    spec = pod.get("spec", {})
    cpu = mem = Decimal(0)
    for container in spec.get("containers", []):
        req = (container.get("resources") or {}).get("requests") or {}
        cpu += _q(req.get("cpu"))
        mem += _q(req.get("memory"))
    init_cpu = init_mem = Decimal(0)
    for container in spec.get("initContainers", []):
        req = (container.get("resources") or {}).get("requests") or {}
        if container.get("restartPolicy") == "Always":  # native sidecar
            cpu += _q(req.get("cpu"))
            mem += _q(req.get("memory"))
        else:
            init_cpu = max(init_cpu, _q(req.get("cpu")))
            init_mem = max(init_mem, _q(req.get("memory")))
    return max(cpu, init_cpu), max(mem, init_mem)


def _is_schedulable_worker(node):
    if node.get("spec", {}).get("unschedulable"):
        return False
    for taint in node.get("spec", {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute"):
            return False
    return True


def merge_workloads(workloads):
    """{name: {replicas, containers}}: one entry per workload name.

    Several roles may name the same workload: the role that deploys it gives its
    containers and replica count, an autoscaling role its HPA's minimum (an entry
    without containers). The larger replica count wins; the containers come from
    the first entry that has them.
    """
    merged = {}
    for workload in workloads:
        entry = merged.setdefault(workload["name"], {"replicas": 0, "containers": []})
        entry["replicas"] = max(entry["replicas"], int(workload.get("replicas") or 0))
        if not entry["containers"] and workload.get("containers"):
            entry["containers"] = list(workload["containers"])
    return merged


def capacity_report(workloads, nodes, pods, replaced_namespace=""):
    """Compare what the run will deploy with the workers' free resources.

    workloads: [{name, replicas, containers: [{cpu, memory}, ...]}]
    nodes, pods: k8s_info resources. Pods in ``replaced_namespace`` are not
    counted as used, because this run applies (and so replaces) them.
    """
    workers = [n for n in nodes if _is_schedulable_worker(n)]
    free = {}
    for node in workers:
        alloc = node.get("status", {}).get("allocatable", {})
        free[node["metadata"]["name"]] = [_q(alloc.get("cpu")), _q(alloc.get("memory"))]
    total_alloc_cpu = sum((v[0] for v in free.values()), Decimal(0))
    total_alloc_mem = sum((v[1] for v in free.values()), Decimal(0))
    for pod in pods:
        node_name = pod.get("spec", {}).get("nodeName")
        if node_name not in free:
            continue
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if replaced_namespace and pod["metadata"].get("namespace") == replaced_namespace:
            continue
        cpu, mem = _pod_requests(pod)
        free[node_name][0] -= cpu
        free[node_name][1] -= mem

    planned = []
    for name, workload in merge_workloads(workloads).items():
        replicas = int(workload.get("replicas") or 0)
        cpu = sum((_q(c.get("cpu")) for c in workload.get("containers", [])), Decimal(0))
        mem = sum((_q(c.get("memory")) for c in workload.get("containers", [])), Decimal(0))
        planned.extend([(name, cpu, mem)] * replicas)
    need_cpu = sum((p[1] for p in planned), Decimal(0))
    need_mem = sum((p[2] for p in planned), Decimal(0))
    free_cpu = sum((v[0] for v in free.values()), Decimal(0))
    free_mem = sum((v[1] for v in free.values()), Decimal(0))

    # First-fit decreasing: biggest memory first, as the scheduler would struggle with those.
    remaining = {name: list(vals) for name, vals in free.items()}
    unplaced = []
    for name, cpu, mem in sorted(planned, key=lambda p: (p[2], p[1]), reverse=True):
        for vals in remaining.values():
            if vals[0] >= cpu and vals[1] >= mem:
                vals[0] -= cpu
                vals[1] -= mem
                break
        else:
            unplaced.append(f"{name} (cpu {_fmt_cpu(cpu)}, memory {_fmt_mem(mem)})")

    return {
        "fits": not unplaced,
        "workers": sorted(free),
        "pods_planned": len(planned),
        "required": {"cpu": _fmt_cpu(need_cpu), "memory": _fmt_mem(need_mem)},
        "allocatable": {"cpu": _fmt_cpu(total_alloc_cpu), "memory": _fmt_mem(total_alloc_mem)},
        "free": {"cpu": _fmt_cpu(free_cpu), "memory": _fmt_mem(free_mem)},
        "free_per_worker": {
            name: {"cpu": _fmt_cpu(v[0]), "memory": _fmt_mem(v[1])} for name, v in sorted(free.items())
        },
        "unplaceable": unplaced,
    }


def node_summary(nodes):
    """One flat record per node: name, role, ready, version, cpu, memory."""
    rows = []
    for node in nodes:
        labels = node.get("metadata", {}).get("labels") or {}
        status = node.get("status", {})
        ready = "Unknown"
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready":
                ready = cond.get("status", "Unknown")
        alloc = status.get("allocatable", {})
        rows.append(
            {
                "name": node["metadata"]["name"],
                "role": "control-plane" if "node-role.kubernetes.io/control-plane" in labels else "worker",
                "ready": ready == "True",
                "schedulable": _is_schedulable_worker(node),
                "version": status.get("nodeInfo", {}).get("kubeletVersion", "?"),
                "cpu": alloc.get("cpu", "?"),
                "memory": alloc.get("memory", "?"),
            }
        )
    for row in rows:
        row["line"] = (
            f"{row['name']:<24} {row['role']:<14} Ready={row['ready']!s:<6} {row['version']:<10} "
            f"cpu={row['cpu']} memory={row['memory']}"
        )
    return sorted(rows, key=lambda r: r["name"])


def volumes_on_nodes(volumes, nodes, namespace):
    """The PersistentVolumes bound to a claim in ``namespace`` that only the given nodes can
    mount (a node-local volume: kind's local-path, a hostPath or local volume, any volume whose
    nodeAffinity names hostnames), as {claim, volume, access_modes, nodes}; a pod using one
    cannot start anywhere else while those nodes are down."""
    down = set(nodes)
    found = []
    for pv in volumes or []:
        spec = pv.get("spec") or {}
        claim = spec.get("claimRef") or {}
        if claim.get("namespace") != namespace:
            continue
        hosts = set()
        required = ((spec.get("nodeAffinity") or {}).get("required") or {}).get("nodeSelectorTerms") or []
        for term in required:
            for expr in term.get("matchExpressions") or []:
                if expr.get("key") == "kubernetes.io/hostname" and expr.get("operator") == "In":
                    hosts.update(expr.get("values") or [])
        if hosts and hosts <= down:
            found.append({"claim": claim.get("name", ""), "volume": pv["metadata"]["name"],
                          "access_modes": ", ".join(spec.get("accessModes") or []),
                          "nodes": sorted(hosts)})
    return sorted(found, key=lambda v: v["claim"])


class FilterModule:
    """Capacity preflight filters."""

    def filters(self):
        return {
            "k8s_quantity": k8s_quantity,
            "capacity_report": capacity_report,
            "merge_workloads": merge_workloads,
            "node_summary": node_summary,
            "volumes_on_nodes": volumes_on_nodes,
        }
