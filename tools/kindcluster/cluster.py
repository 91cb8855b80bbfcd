"""kind create/delete for the cluster `desktop`, pod networking, storage and readiness."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from . import images
from .common import (CLUSTER_NAME, CONTEXT, KUBECONFIG, NODE_NAMES, POD_SUBNET, RUN_DIR,
                     SERVICE_SUBNET, die, log, run)

# Pod network without kindnetd (it is not on the Go module proxy): the bridge plugin from
# Debian's containernetworking-plugins on each node, host-local IPAM from the node's podCIDR,
# routes between the nodes' pod ranges, and masquerading only for traffic leaving the pod network
# (so pod-to-pod traffic keeps its source address).
BRIDGE_CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "ai-stack-bridge",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
         "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "@POD_CIDR@"}]],
                  "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}


# A stopped node's pods are replaced after about 30 s instead of Kubernetes' 5 min 40 s (40 s
# until the node is NotReady, then the 300 s toleration every pod gets by default), so the test
# that stops a worker (tests/integration/kind) takes a minute. Docker Desktop's cluster keeps the defaults.
NODE_FAILURE_ARGS = (
    ("controllerManager", "node-monitor-grace-period", "20s"),
    ("apiServer", "default-not-ready-toleration-seconds", "10"),
    ("apiServer", "default-unreachable-toleration-seconds", "10"),
)


def kind_config(default_cni: bool) -> str:
    cfg = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": CLUSTER_NAME,
        "networking": {"podSubnet": POD_SUBNET, "serviceSubnet": SERVICE_SUBNET,
                       "disableDefaultCNI": not default_cni},
        "nodes": [{"role": "control-plane"}, {"role": "worker"}, {"role": "worker"}],
        # kind writes kubeadm's v1beta3 configuration for Kubernetes < 1.36: extraArgs are maps.
        "kubeadmConfigPatches": [json.dumps({"kind": "ClusterConfiguration", **{
            component: {"extraArgs": {name: value for c, name, value in NODE_FAILURE_ARGS if c == component}}
            for component in dict.fromkeys(c for c, _, _ in NODE_FAILURE_ARGS)}})],
    }
    return json.dumps(cfg, indent=2)


class Kind:
    def __init__(self, host: str, kind: Path, kubectl: Path) -> None:
        self.host = host
        self.kind = kind
        self.kubectl_bin = kubectl
        self.env = images.docker_env(host)

    # ------------------------------------------------------------------ helpers
    def kubectl(self, *args, check=True, input_text=None, timeout=120):
        return run([self.kubectl_bin, f"--kubeconfig={KUBECONFIG}", f"--context={CONTEXT}", *args],
                   check=check, capture=True, input_text=input_text, timeout=timeout)

    def node_exec(self, node: str, script: str, input_text: str | None = None, check=True):
        return run(["docker", "exec", "-i", node, "sh", "-c", script], env=self.env, check=check,
                   capture=True, input_text=input_text)

    def exists(self) -> bool:
        r = run([self.kind, "get", "clusters"], env=self.env, capture=True, check=False)
        return CLUSTER_NAME in r.stdout.split()

    def export_kubeconfig(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        run([self.kind, "export", "kubeconfig", "--name", CLUSTER_NAME, "--kubeconfig", KUBECONFIG],
            env=self.env, capture=True)
        KUBECONFIG.chmod(0o600)

    def health(self) -> tuple[bool, str]:
        if not KUBECONFIG.exists():
            return False, "no kubeconfig"
        r = self.kubectl("get", "--raw=/readyz", check=False, timeout=15)
        if r.returncode != 0 or r.stdout.strip() != "ok":
            return False, "kube-apiserver not ready"
        r = self.kubectl("get", "nodes", "-o", "json", check=False, timeout=15)
        if r.returncode != 0:
            return False, "cannot list nodes"
        ready = {n["metadata"]["name"] for n in json.loads(r.stdout)["items"]
                 if any(c["type"] == "Ready" and c["status"] == "True"
                        for c in n["status"].get("conditions", []))}
        missing = [n for n in NODE_NAMES if n not in ready]
        if missing:
            return False, f"nodes not Ready: {', '.join(missing)}"
        r = self.kubectl("get", "storageclass", "standard", "-o", "json", check=False)
        if r.returncode != 0:
            return False, "StorageClass standard missing"
        return True, "healthy"

    def config_current(self) -> bool:
        """Whether the cluster was made with the configuration this code would make now."""
        try:
            made = json.loads((RUN_DIR / "kind-config.json").read_text())
        except (OSError, ValueError):
            return False
        return made == json.loads(kind_config(not made.get("networking", {}).get("disableDefaultCNI")))

    # ------------------------------------------------------------------ lifecycle
    def create(self, image: str, default_cni: bool) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        (RUN_DIR / ".gitignore").write_text("*\n")
        cfg = RUN_DIR / "kind-config.json"
        cfg.write_text(kind_config(default_cni))
        log(f"kind create cluster --name {CLUSTER_NAME} --image {image}")
        t0 = time.monotonic()
        r = subprocess.run([str(self.kind), "create", "cluster", "--name", CLUSTER_NAME,
                            "--image", image, "--config", str(cfg), "--kubeconfig", str(KUBECONFIG),
                            "--retain"], env=self.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        (RUN_DIR / "kind-create.log").write_text(r.stdout)
        if r.returncode != 0:
            logs = RUN_DIR / "kind-logs"
            run([self.kind, "export", "logs", str(logs), "--name", CLUSTER_NAME], env=self.env,
                check=False, capture=True)
            die(f"kind create cluster failed:\n{r.stdout[-3000:]}\nnode logs: {logs}; "
                "remove the cluster with `make kind-down`")
        KUBECONFIG.chmod(0o600)
        log(f"kind create cluster: {time.monotonic() - t0:.0f}s")
        self.guard_service_range()
        if not default_cni:
            self.wire_pod_network()

    def guard_service_range(self) -> None:
        """Refuse traffic to a Service IP that kube-proxy has not translated (yet).

        A connection to a ClusterIP made before kube-proxy has written its rules leaves the node
        through the default route. On a normal network it fails and the client retries; on these
        VMs something upstream answers every port-443 connection with a 404, and the API server
        kept such a connection to metrics-server's ClusterIP alive, so the metrics APIService
        stayed `FailedDiscoveryCheck` for good. Translated packets already carry a pod address
        when the filter table sees them, so only untranslated ones are refused."""
        for node in NODE_NAMES:
            script = []
            for chain in ("OUTPUT", "FORWARD"):
                rule = f"{chain} -d {SERVICE_SUBNET} -j REJECT --reject-with icmp-port-unreachable"
                script.append(f"iptables -C {rule} 2>/dev/null || iptables -A {rule}")
            self.node_exec(node, " && ".join(script))

    def has_kindnet(self) -> bool:
        """kind's published node image brings kindnetd, which enforces NetworkPolicy itself."""
        r = self.kubectl("-n", "kube-system", "get", "daemonset", "kindnet", check=False)
        return r.returncode == 0

    def node_ips(self) -> dict[str, str]:
        ips = {}
        for node in NODE_NAMES:
            r = run(["docker", "inspect", "-f",
                     "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", node],
                    env=self.env, capture=True)
            ips[node] = r.stdout.strip()
        return ips

    def pod_cidrs(self) -> dict[str, str]:
        r = self.kubectl("get", "nodes", "-o", "json")
        return {n["metadata"]["name"]: n["spec"]["podCIDR"] for n in json.loads(r.stdout)["items"]}

    def wire_pod_network(self) -> None:
        ips, cidrs = self.node_ips(), self.pod_cidrs()
        for node in NODE_NAMES:
            conf = json.dumps(BRIDGE_CONFLIST, indent=2).replace("@POD_CIDR@", cidrs[node])
            self.node_exec(node, "mkdir -p /etc/cni/net.d && cat > /etc/cni/net.d/10-ai-stack-bridge.conflist",
                           input_text=conf)
            script = ["sysctl -qw net.ipv4.ip_forward=1"]
            for other in NODE_NAMES:
                if other != node:
                    script.append(f"ip route replace {cidrs[other]} via {ips[other]}")
            rule = f"POSTROUTING -s {cidrs[node]} ! -d {POD_SUBNET} -j MASQUERADE"
            script.append(f"iptables -t nat -C {rule} 2>/dev/null || iptables -t nat -A {rule}")
            self.node_exec(node, " && ".join(script))
        log("pod network: bridge CNI on every node, routes between the nodes' pod ranges")

    def rewire(self) -> None:
        """Wire the pod network and the Service-range guard again on every node (idempotent)."""
        self.guard_service_range()
        self.wire_pod_network()

    def wait_ready(self, timeout: int = 300) -> None:
        t0 = time.monotonic()
        self.kubectl("wait", "--for=condition=Ready", "node", "--all", f"--timeout={timeout}s",
                     timeout=timeout + 30)
        for ns, name in (("kube-system", "coredns"), ("local-path-storage", "local-path-provisioner")):
            r = self.kubectl("-n", ns, "rollout", "status", f"deployment/{name}",
                             f"--timeout={timeout}s", check=False, timeout=timeout + 30)
            if r.returncode != 0:
                self.dump(ns)
                die(f"deployment {ns}/{name} did not become available: {r.stderr.strip()}")
        log(f"nodes Ready, CoreDNS and the storage provisioner available: "
            f"{time.monotonic() - t0:.0f}s")

    def dump(self, ns: str) -> None:
        for args in (("get", "pods", "-o", "wide"), ("get", "events", "--sort-by=.lastTimestamp")):
            r = self.kubectl("-n", ns, *args, check=False)
            print(r.stdout, r.stderr, flush=True)

    def delete(self) -> None:
        if self.exists():
            log(f"kind delete cluster --name {CLUSTER_NAME}")
            run([self.kind, "delete", "cluster", "--name", CLUSTER_NAME,
                 "--kubeconfig", KUBECONFIG], env=self.env, capture=True)

    def remove_network(self) -> None:
        r = run(["docker", "network", "ls", "-q", "--filter", "name=^kind$"], env=self.env,
                capture=True, check=False)
        if r.stdout.strip():
            run(["docker", "network", "rm", "kind"], env=self.env, capture=True)


def node_memory(host: str) -> dict[str, str]:
    """Memory each node container uses (docker stats), for the README's numbers."""
    r = run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *NODE_NAMES],
            env=images.docker_env(host), capture=True, check=False)
    return dict(line.split(" ", 1) for line in r.stdout.splitlines() if " " in line)



def env_lines(host: str, ours: bool) -> list[str]:
    lines = [f"export KUBECONFIG={KUBECONFIG}"]
    if ours or os.environ.get("DOCKER_HOST"):
        lines.append(f"export DOCKER_HOST={host}")
    return lines
