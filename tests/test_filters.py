"""Unit tests of plugins/filter/cluster.py (capacity preflight)."""

import importlib.util

import pytest
from ai_stack_testlib import ROOT

_spec = importlib.util.spec_from_file_location(
    "cluster_filters", ROOT / "plugins" / "filter" / "cluster.py"
)
cf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cf)

GI = 1024**3


def node(name, cpu="4", memory="8Gi", control_plane=False, taints=None, unschedulable=False, ready="True"):
    labels = {"kubernetes.io/hostname": name}
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = ""
    spec = {}
    if taints is not None:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": ready}],
            "nodeInfo": {"kubeletVersion": "v1.34.0"},
        },
    }


CONTROL_PLANE_TAINT = [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]


def pod(name, node_name, namespace="default", phase="Running", containers=(), init=()):
    def c(i, req, sidecar=False):
        out = {"name": f"c{i}", "resources": {"requests": dict(req)}}
        if sidecar:
            out["restartPolicy"] = "Always"
        return out

    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "nodeName": node_name,
            "containers": [c(i, r) for i, r in enumerate(containers)],
            "initContainers": [c(i, r, sidecar) for i, (r, sidecar) in enumerate(init)],
        },
        "status": {"phase": phase},
    }


def workload(name, replicas, *containers):
    return {"name": name, "replicas": replicas, "containers": [{"cpu": c, "memory": m} for c, m in containers]}


STACK = [
    workload("docker-model-runner", 1, ("1000m", "4Gi"), ("10m", "16Mi")),
    workload("go-backend", 1, ("100m", "64Mi")),
    workload("react-frontend", 1, ("50m", "32Mi")),
]

KIND = [
    node("desktop-control-plane", control_plane=True, taints=CONTROL_PLANE_TAINT),
    node("desktop-worker"),
    node("desktop-worker2"),
]


def test_filters_are_registered():
    assert set(cf.FilterModule().filters()) == {"k8s_quantity", "capacity_report", "merge_workloads", "node_summary",
                                                  "volumes_on_nodes"}


@pytest.mark.parametrize(
    "value,expected",
    [("500m", 0.5), ("4Gi", 4 * GI), (2, 2.0), ("1.5", 1.5), ("128Mi", 128 * 1024**2), ("1k", 1000.0)],
)
def test_k8s_quantity(value, expected):
    assert cf.k8s_quantity(value) == pytest.approx(expected)


def test_k8s_quantity_rejects_gb_typo_form():
    with pytest.raises(ValueError):
        cf.k8s_quantity("4 GB")


def test_stack_that_fits():
    report = cf.capacity_report(STACK, KIND, [])
    assert report["fits"] is True
    assert report["unplaceable"] == []
    assert report["workers"] == ["desktop-worker", "desktop-worker2"]
    assert report["pods_planned"] == 3
    assert report["required"] == {"cpu": "1160m", "memory": "4.11Gi"}
    assert report["allocatable"] == {"cpu": "8000m", "memory": "16.00Gi"}
    assert report["free"] == {"cpu": "8000m", "memory": "16.00Gi"}


def test_replicas_multiply_and_may_be_strings():
    """group_vars templates the replica counts, so they arrive as strings."""
    report = cf.capacity_report(
        [workload("go-backend", "3", ("100m", "64Mi")), workload("off", "0", ("1", "1Gi"))], KIND, []
    )
    assert report["pods_planned"] == 3
    assert report["required"] == {"cpu": "300m", "memory": "0.19Gi"}


def test_pod_bigger_than_any_worker_is_unplaceable():
    """12Gi fits in the 16Gi the workers have together, but not on any one of them."""
    big = [workload("docker-model-runner", 1, ("1000m", "12Gi"), ("10m", "16Mi")), *STACK[1:]]
    report = cf.capacity_report(big, KIND, [])
    assert report["fits"] is False
    assert report["unplaceable"] == ["docker-model-runner (cpu 1010m, memory 12.02Gi)"]
    assert report["free"]["memory"] == "16.00Gi"


def test_too_many_replicas_lists_each_pod_that_does_not_fit():
    report = cf.capacity_report([workload("docker-model-runner", 3, ("1000m", "6Gi"))], KIND, [])
    assert report["fits"] is False
    assert report["unplaceable"] == ["docker-model-runner (cpu 1000m, memory 6.00Gi)"]
    assert report["pods_planned"] == 3


def test_cpu_alone_can_make_a_pod_unplaceable():
    report = cf.capacity_report([workload("cpu-hog", 1, ("4500m", "1Gi"))], KIND, [])
    assert report["unplaceable"] == ["cpu-hog (cpu 4500m, memory 1.00Gi)"]


def test_tainted_control_plane_is_not_a_worker():
    nodes = [
        node("cp", cpu="32", memory="64Gi", control_plane=True, taints=CONTROL_PLANE_TAINT),
        node("w1", memory="2Gi"),
    ]
    report = cf.capacity_report(STACK, nodes, [])
    assert report["workers"] == ["w1"]
    assert report["allocatable"] == {"cpu": "4000m", "memory": "2.00Gi"}
    assert report["fits"] is False
    assert "docker-model-runner (cpu 1010m, memory 4.02Gi)" in report["unplaceable"]
    # Without the taint the same node takes the pod.
    untainted = [node("cp", cpu="32", memory="64Gi", control_plane=True, taints=[]), node("w1", memory="2Gi")]
    assert cf.capacity_report(STACK, untainted, [])["fits"] is True


def test_noexecute_taint_and_cordon_exclude_prefernoschedule_does_not():
    nodes = [
        node("a", taints=[{"key": "x", "effect": "NoExecute"}]),
        node("b", unschedulable=True),
        node("c", taints=[{"key": "y", "effect": "PreferNoSchedule"}]),
    ]
    assert cf.capacity_report([], nodes, [])["workers"] == ["c"]


def test_pods_of_the_replaced_namespace_are_not_counted():
    old_runner = pod("old-runner", "desktop-worker", namespace="ai-app", containers=[{"cpu": "1", "memory": "6Gi"}])
    old_runner2 = pod("old-runner-2", "desktop-worker2", namespace="ai-app", containers=[{"cpu": "1", "memory": "6Gi"}])
    pods = [old_runner, old_runner2]
    replaced = cf.capacity_report(STACK, KIND, pods, "ai-app")
    assert replaced["fits"] is True
    assert replaced["free"] == {"cpu": "8000m", "memory": "16.00Gi"}
    # The same pods in another namespace hold their resources.
    kept = cf.capacity_report(STACK, KIND, pods, "other")
    assert kept["fits"] is False
    assert kept["free"] == {"cpu": "6000m", "memory": "4.00Gi"}
    assert cf.capacity_report(STACK, KIND, pods)["fits"] is False


def test_finished_pods_are_not_counted():
    pods = [
        pod("job-done", "desktop-worker", phase="Succeeded", containers=[{"cpu": "3", "memory": "7Gi"}]),
        pod("job-failed", "desktop-worker2", phase="Failed", containers=[{"cpu": "3", "memory": "7Gi"}]),
    ]
    report = cf.capacity_report(STACK, KIND, pods)
    assert report["free"] == {"cpu": "8000m", "memory": "16.00Gi"}
    assert report["fits"] is True
    running = [dict(p, status={"phase": "Running"}) for p in pods]
    assert cf.capacity_report(STACK, KIND, running)["free"] == {"cpu": "2000m", "memory": "2.00Gi"}


def test_pending_pods_on_a_node_are_counted():
    p = pod("pending", "desktop-worker", phase="Pending", containers=[{"cpu": "1", "memory": "1Gi"}])
    assert cf.capacity_report([], KIND, [p])["free_per_worker"]["desktop-worker"] == {
        "cpu": "3000m",
        "memory": "7.00Gi",
    }


def test_pods_off_the_workers_are_ignored():
    pods = [
        pod(
            "apiserver", "desktop-control-plane", namespace="kube-system", containers=[{"cpu": "250m", "memory": "1Gi"}]
        ),
        pod("unscheduled", None, containers=[{"cpu": "1", "memory": "1Gi"}]),
    ]
    assert cf.capacity_report([], KIND, pods)["free"] == {"cpu": "8000m", "memory": "16.00Gi"}


def test_native_sidecar_requests_are_counted():
    """A sidecar (restartPolicy: Always) runs beside the containers: its requests add up."""
    with_sidecar = pod(
        "runner",
        "desktop-worker",
        containers=[{"cpu": "1", "memory": "3Gi"}],
        init=[({"cpu": "500m", "memory": "2Gi"}, True)],
    )
    report = cf.capacity_report([], KIND, [with_sidecar])
    assert report["free_per_worker"]["desktop-worker"] == {"cpu": "2500m", "memory": "3.00Gi"}


def test_plain_init_containers_count_only_their_peak():
    """A run-to-completion init container runs before the others: max(init, sum of containers)."""
    small_init = pod(
        "a", "desktop-worker", containers=[{"cpu": "1", "memory": "3Gi"}], init=[({"cpu": "2", "memory": "1Gi"}, False)]
    )
    report = cf.capacity_report([], KIND, [small_init])
    assert report["free_per_worker"]["desktop-worker"] == {"cpu": "2000m", "memory": "5.00Gi"}
    both = pod(
        "b",
        "desktop-worker2",
        containers=[{"cpu": "1", "memory": "1Gi"}],
        init=[({"cpu": "500m", "memory": "1Gi"}, True), ({"cpu": "1", "memory": "4Gi"}, False)],
    )
    # containers + sidecar: 1500m / 2Gi; the init container's peak: 1 / 4Gi.
    assert cf.capacity_report([], KIND, [both])["free_per_worker"]["desktop-worker2"] == {
        "cpu": "2500m",
        "memory": "4.00Gi",
    }


def test_missing_requests_count_as_zero():
    p = pod("no-requests", "desktop-worker", containers=[{}])
    p["spec"]["containers"][0]["resources"] = {}
    assert cf.capacity_report([], KIND, [p])["free"] == {"cpu": "8000m", "memory": "16.00Gi"}


def test_node_summary():
    nodes = [node("w2"), node("cp", control_plane=True, taints=CONTROL_PLANE_TAINT), node("w1", ready="False")]
    rows = cf.node_summary(nodes)
    assert [r["name"] for r in rows] == ["cp", "w1", "w2"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["cp"]["role"] == "control-plane" and by_name["cp"]["schedulable"] is False
    assert by_name["w1"]["ready"] is False and by_name["w2"]["ready"] is True
    assert by_name["w2"]["role"] == "worker" and by_name["w2"]["schedulable"] is True
    assert by_name["w2"]["version"] == "v1.34.0"
    assert "Ready=True" in by_name["w2"]["line"] and "memory=8Gi" in by_name["w2"]["line"]


@pytest.mark.parametrize("plugin", sorted(p.name for p in (ROOT / "plugins" / "filter").glob("*.py")))
def test_loading_a_filter_plugin_imports_no_heavy_module(plugin):
    """Ansible loads every filter plugin of the directory in each task's worker process that compiles
    a template with a filter: a plugin that imports the Kubernetes client at load time made every such
    task about 0.7 s slower (found with py-spy). The client is imported on first use instead."""
    import subprocess
    import sys

    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('p', {str(ROOT / 'plugins' / 'filter' / plugin)!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "heavy = sorted(m for m in ('kubernetes', 'urllib3', 'yaml', 'ansible') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"{plugin} imports {out} when it loads"


def test_quantities_still_parse_with_the_client():
    assert cf.k8s_quantity("500m") == 0.5
    assert cf.k8s_quantity("4Gi") == 4 * GI


def _pv(name, ns, claim, hosts, modes=("ReadWriteOnce",)):
    affinity = {"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": list(hosts)}]}]}} if hosts else None
    return {"metadata": {"name": name},
            "spec": {"claimRef": {"namespace": ns, "name": claim}, "accessModes": list(modes),
                     **({"nodeAffinity": affinity} if affinity else {})}}


def test_volumes_on_nodes():
    pvs = [_pv("pvc-1", "ai-app", "models", ["worker2"]),
           _pv("pvc-2", "ai-app", "other", ["worker"]),          # on a node that is up
           _pv("pvc-3", "elsewhere", "models", ["worker2"]),     # another namespace
           _pv("pvc-4", "ai-app", "nfs", []),                    # network volume: any node
           _pv("pvc-5", "ai-app", "both", ["worker", "worker2"])]  # still mountable on worker
    assert cf.volumes_on_nodes(pvs, ["worker2"], "ai-app") == [
        {"claim": "models", "volume": "pvc-1", "access_modes": "ReadWriteOnce", "nodes": ["worker2"]}]
    assert cf.volumes_on_nodes(pvs, [], "ai-app") == []
    assert cf.volumes_on_nodes(None, ["worker2"], "ai-app") == []
