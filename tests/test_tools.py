"""The test-cluster tools' offline parts: planning on an empty cache and the simulated cluster's
go.mod, ldflags, nodes and process handling, the runc wrapper, the kind cluster's configuration,
the image names read from the roles, and `make deploy`'s target choice."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "tools"
sys.path.insert(0, str(TOOLS))

from kindcluster import cluster, engine, stackimages  # noqa: E402
from testcluster import build as sim_build  # noqa: E402
from testcluster import cluster as sim_cluster  # noqa: E402
from testcluster import common as sim_common  # noqa: E402
from testcluster import manifests as sim_manifests  # noqa: E402
from testcluster import processes as sim_processes  # noqa: E402

import deploy  # noqa: E402


def test_testcluster_plan_on_a_cache_that_does_not_exist(tmp_path):
    """A fresh machine has no ~/.cache/ai-stack-testcluster: planning must create it, not crash
    (it did: `go mod download` ran with the missing directory as its working directory)."""
    cache = tmp_path / "no" / "such" / "cache"
    env = dict(os.environ, AI_STACK_TESTCLUSTER_CACHE=str(cache), PYTHONPATH=str(TOOLS))
    r = subprocess.run([sys.executable, "-m", "testcluster", "plan"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    assert lines["kube-apiserver"].startswith(str(cache / "bin"))
    assert lines["etcd"].endswith("\tmissing")
    assert cache.is_dir()


def test_testcluster_env_and_pinned_paths_need_no_build(monkeypatch):
    monkeypatch.setattr(sim_build.Plan, "etcd_version", lambda self: "v3.6.4")
    plan = sim_build.Plan().binaries()
    for name in sim_build.PINNED:
        assert sim_build.pinned_binary(name) == plan[name]
    helm = sim_common.load_versions()["helm"]
    assert plan["helm"] == sim_common.CACHE / "bin" / f"helm-{helm}" / "helm"
    env = sim_cluster.env()
    kubeconfig = str(REPO / ".testcluster" / "kubeconfig")
    assert env["KUBECONFIG"] == env["K8S_AUTH_KUBECONFIG"] == kubeconfig
    assert env["K8S_AUTH_CONTEXT"] == "kwok-desktop-sim"
    assert env["TESTCLUSTER_HELM"] == str(plan["helm"])
    assert env["TESTCLUSTER_KWOKCTL"] == str(plan["kwokctl"])


K8S_GOMOD = """module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
\tgo.etcd.io/etcd/server/v3 v3.6.4
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
)
"""


def test_testcluster_wrapper_module_maps_staging_to_published_versions():
    assert sim_build.etcd_from_gomod(K8S_GOMOD) == "v3.6.4"
    gomod = sim_build.wrapper_gomod(K8S_GOMOD, "v1.34.4", "v3.6.4")
    lines = gomod.splitlines()
    assert lines[:5] == ["module testcluster.local/k8s-wrapper", "", "go 1.24.0", "",
                         "godebug default=go1.24"]
    assert "\tk8s.io/kubernetes v1.34.4" in lines and "\tgo.etcd.io/etcd/server/v3 v3.6.4" in lines
    assert "\tk8s.io/api => k8s.io/api v0.34.4" in lines
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.4" in lines
    with pytest.raises(SystemExit):
        sim_build.etcd_from_gomod("module x\n")
    with pytest.raises(SystemExit):
        sim_build.wrapper_gomod("module x\n\ngo 1.24\n", "v1.34.4", "v3.6.4")


def test_testcluster_version_ldflags():
    ld = sim_build.k8s_ldflags("v1.34.4")
    assert "-X k8s.io/component-base/version.gitVersion=v1.34.4" in ld
    assert "-X k8s.io/client-go/pkg/version.gitMajor=1" in ld
    assert "-X k8s.io/client-go/pkg/version.gitMinor=34" in ld
    helm = sim_build.helm_ldflags("v3.18.6", "require (\n\tk8s.io/client-go v0.33.3\n)\n")
    assert "helm.sh/helm/v3/internal/version.version=v3.18.6" in helm
    assert "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=33" in helm
    assert "k8sVersionMinor=20" in sim_build.helm_ldflags("v3.0.0", "")


def test_testcluster_nodes_are_sized_from_the_environment(monkeypatch):
    monkeypatch.setenv("TESTCLUSTER_WORKER_CPU", "2")
    monkeypatch.delenv("TESTCLUSTER_WORKER_MEMORY", raising=False)
    monkeypatch.setenv("TESTCLUSTER_CONTROL_PLANE_MEMORY", "2Gi")
    nodes = {n["metadata"]["name"]: n for n in sim_manifests.node_manifests("v1.34.4", "v0.8.0")}
    assert list(nodes) == ["desktop-control-plane", "desktop-worker", "desktop-worker2"]
    control, worker = nodes["desktop-control-plane"], nodes["desktop-worker"]
    assert control["spec"]["taints"][0]["effect"] == "NoSchedule"
    assert "taints" not in worker["spec"]
    assert control["status"]["capacity"] == {"cpu": "2", "memory": "2Gi", "pods": "110",
                                             "ephemeral-storage": "100Gi"}
    assert worker["status"]["allocatable"]["memory"] == "8Gi"
    assert worker["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"
    monkeypatch.setenv("TESTCLUSTER_WORKER_PODS", "lots")
    with pytest.raises(SystemExit):
        sim_manifests.node_manifests("v1.34.4", "v0.8.0")
    [sc] = sim_manifests.storage_manifests()
    assert sc["provisioner"] == "testcluster.local/hostpath"


def test_testcluster_stops_only_its_own_processes(tmp_path):
    (tmp_path / "etcd.pid").write_text("123\n")
    (tmp_path / "kwok.pid").write_text("not a pid\n")
    assert sim_processes.read_pid_dir(tmp_path) == {"etcd": 123}
    assert sim_processes.read_pid_dir(tmp_path / "missing") == {}
    p = subprocess.Popen(["sleep", "30"])
    for _ in range(100):  # until the child has exec'd: before that its command line is ours
        if sim_processes.pid_cmdline(p.pid).startswith("sleep 30"):
            break
        time.sleep(0.05)
    try:
        sim_processes.stop_pid(p.pid, ("hostpath-provisioner",), "someone else's")
        assert sim_processes.pid_alive(p.pid)
        sim_processes.stop_pid(p.pid, ("sleep 30",), "ours")
        assert not sim_processes.pid_alive(p.pid)  # a zombie until reaped: counts as gone
    finally:
        p.kill()
        p.wait()
    assert sim_processes.wait_reaped([p.pid], 1) == []


def _spec(caps):
    return {"process": {"capabilities": {k: list(caps) for k in
                                         ("bounding", "effective", "permitted")}}}


def test_runc_wrapper_drops_only_cap_sys_resource(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(_spec(["CAP_SYS_ADMIN", "CAP_SYS_RESOURCE"])))
    process = tmp_path / "process.json"
    process.write_text(json.dumps(_spec(["CAP_SYS_RESOURCE", "CAP_NET_ADMIN"])["process"]))
    fake = tmp_path / "runc"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    env = dict(os.environ, AI_STACK_REAL_RUNC=str(fake))
    wrapper = TOOLS / "kindcluster" / "runc_wrapper.py"
    assert os.access(wrapper, os.X_OK), "dockerd executes the wrapper directly"
    r = subprocess.run([str(wrapper), "create", "--bundle", str(bundle), "ctr1"], env=env,
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["create", "--bundle", str(bundle), "ctr1"]
    caps = json.loads((bundle / "config.json").read_text())["process"]["capabilities"]
    assert all(v == ["CAP_SYS_ADMIN"] for v in caps.values())
    subprocess.run([str(wrapper), "exec", "--process", str(process), "ctr1"], env=env, check=True,
                   capture_output=True)
    caps = json.loads(process.read_text())["capabilities"]
    assert all(v == ["CAP_NET_ADMIN"] for v in caps.values())


def test_capability_check_reads_the_bounding_set(monkeypatch, tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\tx\nCapBnd:\t000001fffeffffff\n")  # these VMs: bit 24 missing
    real = Path.read_text
    monkeypatch.setattr(Path, "read_text",
                        lambda self, *a, **k: real(status) if str(self) == "/proc/self/status"
                        else real(self, *a, **k))
    assert engine.cap_missing()
    status.write_text("CapBnd:\t000001ffffffffff\n")
    assert not engine.cap_missing()


@pytest.mark.parametrize("default_cni", [True, False])
def test_kind_config_matches_docker_desktop(default_cni):
    cfg = json.loads(cluster.kind_config(default_cni))
    assert cfg["name"] == "desktop"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker", "worker"]
    assert cfg["networking"]["disableDefaultCNI"] is (not default_cni)
    assert cluster.CONTEXT == "kind-desktop"


def test_pod_network_keeps_pod_source_addresses():
    bridge = cluster.BRIDGE_CONFLIST["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["ipMasq"] is False and bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == "@POD_CIDR@"


def test_stack_image_names_come_from_the_role_defaults():
    names = stackimages.names()

    def default(role, var):
        return yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())[var]

    assert names["metrics-server"] == default("autoscaling", "autoscaling_metrics_server_image")
    assert names["curl"] == default("model_runner", "model_runner_prepull_image")
    assert names["model-runner"] == default("model_runner", "model_runner_image")
    assert names["go-backend"] == default("chatbot", "chatbot_backend_image")
    assert names["react-frontend"] == default("chatbot", "chatbot_frontend_image")
    assert names["loadtest"] == default("autoscaling", "autoscaling_loadtest_image")


def test_standin_dockerfiles_say_they_are_standins():
    dockerfiles = sorted((REPO / "tests" / "standins" / "images").glob("*/Dockerfile"))
    assert len(dockerfiles) == 2  # go-backend, react-frontend; the model runner is the real one
    for dockerfile in dockerfiles:
        first = dockerfile.read_text().splitlines()[0]
        assert first.startswith("#") and "STAND-IN" in first, dockerfile


@pytest.mark.parametrize("content,expected", [
    (None, False),
    ("", False),
    ("apiVersion: v1\nkind: Config\ncontexts: []\n", False),
    ("apiVersion: v1\nkind: Config\ncontexts:\n- name: docker-desktop\n  context: {cluster: c}\n", True),
    ("{not yaml", True),  # malformed: the playbook reports it with the file named
])
def test_deploy_uses_the_local_cluster_only_without_any_context(tmp_path, content, expected):
    path = tmp_path / "config"
    if content is not None:
        path.write_text(content)
    assert deploy.has_context(path) is expected


def test_deploy_reads_the_kubeconfig_like_group_vars(monkeypatch, tmp_path):
    monkeypatch.delenv("K8S_AUTH_KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert deploy.kubeconfig_path() == tmp_path / "a"
    monkeypatch.setenv("K8S_AUTH_KUBECONFIG", str(tmp_path / "k"))
    assert deploy.kubeconfig_path() == tmp_path / "k"


def test_deploy_expects_the_context_it_is_given():
    """`make deploy CONTEXT=x` states x: the run uses it and the cluster role expects it."""
    assert deploy.context_args("kind-desktop") == [
        "-e", "ai_stack_context=kind-desktop", "-e", "cluster_expected_context=kind-desktop"]


@pytest.mark.parametrize("profile", [False, True])
def test_deploy_profile_turns_on_the_task_timer(monkeypatch, profile):
    """`make deploy PROFILE=1` runs site.yml with ansible.posix.profile_tasks; without it, no timer.
    `MITOGEN=1` (--mitogen) selects Mitogen's strategy, here with the timer."""
    calls = []
    monkeypatch.setattr(deploy.subprocess, "run", lambda cmd, env, cwd: calls.append((cmd, env)) or
                        type("Done", (), {"returncode": 0})())
    monkeypatch.setattr(deploy.shutil, "which", lambda _: "/bin/true")
    monkeypatch.delenv("ANSIBLE_CALLBACKS_ENABLED", raising=False)
    monkeypatch.delenv("ANSIBLE_STRATEGY", raising=False)
    args = ["--context", "docker-desktop"] + (["--profile", "--mitogen"] if profile else []) + ["--", "--tags", "chatbot"]
    assert deploy.main(args) == 0
    (cmd, env), = calls
    assert cmd[-2:] == ["--tags", "chatbot"] and "site.yml" in cmd
    assert ("ansible.posix.profile_tasks" in env.get("ANSIBLE_CALLBACKS_ENABLED", "")) is profile
    assert (env.get("ANSIBLE_STRATEGY") == "mitogen_linear") is profile


def test_mitogen_strategy_loads_from_the_project():
    """The shim in plugins/strategy gives Mitogen's strategy class (PyPI mitogen, pinned)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("shim", REPO / "plugins" / "strategy" / "mitogen_linear.py")
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    assert shim.StrategyModule.__module__ == "ansible_mitogen.plugins.strategy.mitogen_linear"


def test_testrun_finds_the_key_and_its_base64_in_logs(tmp_path, monkeypatch):
    import testrun

    monkeypatch.setattr(testrun, "REPO", tmp_path)
    clean, raw, encoded = (tmp_path / name for name in ("clean.log", "raw.log", "encoded.log"))
    clean.write_text("ok\nANTHROPIC_API_KEY: ********\n")
    raw.write_text("a\nvalue: sk-ant-test-abc\n")
    encoded.write_text("data:\n  ANTHROPIC_API_KEY: c2stYW50LXRlc3QtYWJj\n")
    assert testrun.leaks("sk-ant-test-abc", [clean]) == []
    assert testrun.leaks("sk-ant-test-abc", [raw, encoded]) == ["raw.log:2: the key", "encoded.log:2: its base64 form"]


def test_kind_config_shortens_node_failure_handling_and_is_compared():
    cfg = json.loads(cluster.kind_config(False))
    patch = json.loads(cfg["kubeadmConfigPatches"][0])
    assert patch["kind"] == "ClusterConfiguration"
    assert patch["controllerManager"]["extraArgs"] == {"node-monitor-grace-period": "20s"}
    assert patch["apiServer"]["extraArgs"]["default-unreachable-toleration-seconds"] == "10"


@pytest.mark.parametrize("context, local_model", [("kind-desktop", True), ("docker-desktop", False)])
def test_deploy_to_the_local_cluster_uses_its_model_and_registry(monkeypatch, context, local_model):
    """On the local kind cluster the real runner pulls the tiny model from the registry beside the
    nodes (kindcluster.localmodel); on any other context the roles' defaults stand."""
    calls = []
    monkeypatch.setattr(deploy.subprocess, "run", lambda cmd, env, cwd: calls.append(cmd) or
                        type("Done", (), {"returncode": 0})())
    monkeypatch.setattr(deploy.shutil, "which", lambda _: "/bin/true")
    assert deploy.main(["--context", context]) == 0
    cmd, = calls
    extra = [json.loads(cmd[i + 1]) for i, a in enumerate(cmd) if a == "-e" and cmd[i + 1].startswith("{")]
    assert extra == ([{"ai_stack_model_name": "ai/tiny-random-llama:f32",
                       "model_runner_registry_mirrors": ["http://desktop-model-registry:5000"]}] if local_model else [])


def test_molecule_default_uses_the_local_clusters_model():
    """The scenario's model and mirror are the ones `kindcluster up` serves (stated twice, in the
    scenario's inventory and in localmodel.py: this keeps them equal)."""
    from kindcluster import localmodel
    inventory = yaml.safe_load((REPO / "molecule/default/inventory/hosts.yml").read_text())
    host = inventory["all"]["children"]["k8s_controller"]["hosts"]["localhost"]
    assert {k: host[k] for k in localmodel.deploy_vars()} == localmodel.deploy_vars()
