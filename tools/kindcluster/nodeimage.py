"""The kind node image: kind's published image where it can be pulled, else built offline.

Offline build, the same steps as `kind build node-image` with local sources instead of a registry:
1. base image: a Debian root file system made with debootstrap (Debian's containerd, runc and CNI
   plugins instead of kind's own builds), kind's images/base/files from the pinned kind module,
   containerd configured for a container (no fuse-overlayfs, restrict_oom_score_adj as rootless
   kind sets it), crictl built from cri-tools;
2. the images kubeadm asks for (`kubeadm config images list`), each built from a binary built here
   and tagged with the upstream name (etcd: the server version Kubernetes' go.mod requires, tagged
   as kubeadm's etcd tag; pause: Kubernetes' own pause.c), plus local-path-provisioner for the
   default StorageClass;
3. a build container from the base image gets kubeadm, kubelet and kubectl, /kind/version, the
   storage manifest, and the images imported into its containerd; `docker commit` makes the node.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from . import engine, images
from .common import FILES, KIND_CACHE, Timer, die, log, run, versions
from testcluster import build as sim

BASE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "containerd", "runc", "containernetworking-plugins",
    "iptables", "nftables", "conntrack", "ebtables", "ethtool", "socat", "util-linux", "mount",
    "kmod", "ca-certificates", "procps", "libseccomp2", "pigz", "iproute2", "lockfile-progs",
    "e2fsprogs", "bash", "curl", "sed", "findutils", "jq",
]
LOCAL_REPO = "ai-stack.local"


def debian_mirror() -> str:
    """AI_STACK_DEBIAN_MIRROR, else the mirror apt on this machine uses, else deb.debian.org."""
    env = os.environ.get("AI_STACK_DEBIAN_MIRROR")
    if env:
        return env
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text = f.read_text()
        except OSError:
            continue
        m = re.search(r"^URIs:\s*(\S+/debian)\s*$", text, re.M) or \
            re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)\s", text, re.M)
        if m:
            return m.group(1)
    return "http://deb.debian.org/debian"


def kind_dir() -> Path:
    return Path(sim.mod_download(f"sigs.k8s.io/kind@{versions()['kind']}")["Dir"])


def _tree_hash(*paths: Path, extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for root in paths:
        for p in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if p.is_file():
                h.update(str(p.relative_to(root.parent)).encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:12]


def base_tag() -> str:
    v = versions()
    # Keyed by what goes into it: packages, suite, our files, kind's files, the configuration step.
    key = _tree_hash(FILES / "node", kind_dir() / "images" / "base" / "files",
                     extra=" ".join(BASE_PACKAGES) + v["debian_suite"]
                     + inspect.getsource(_configure_rootfs))
    return f"{LOCAL_REPO}/kind-base:{v['debian_suite']}-{key}"


def build_base(host: str) -> str:
    tag = base_tag()
    if images.image_id(host, tag):
        log(f"base image: cached ({tag})")
        return tag
    engine.require("debootstrap")
    v = versions()
    rootfs = KIND_CACHE / f"rootfs-{v['debian_suite']}-{tag.rsplit('-', 1)[1]}"
    if rootfs.exists():
        shutil.rmtree(rootfs)
    with Timer("debootstrap"):
        log(f"debootstrap {v['debian_suite']} from {debian_mirror()} (a few minutes) ...")
        r = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
                 v["debian_suite"], rootfs, debian_mirror()], capture=True, check=False)
        if r.returncode != 0:
            die("debootstrap failed (set AI_STACK_DEBIAN_MIRROR to a reachable Debian mirror):\n"
                + "\n".join((r.stdout + r.stderr).splitlines()[-15:]))
    _configure_rootfs(rootfs)
    with Timer("base image import"):
        imported = f"{tag}-rootfs"
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."],
                               stdout=subprocess.PIPE)
        r = subprocess.run(["docker", "import", "-", imported], stdin=tar.stdout,
                           env=images.docker_env(host), stdout=subprocess.DEVNULL)
        tar.stdout.close()
        if tar.wait() != 0 or r.returncode != 0:
            die("docker import of the base root file system failed")
        images.build(host, tag, "\n".join([
            "# kind node base image, built offline: Debian + kind's images/base/files",
            f"FROM {imported}",
            "ENV container=docker",
            "STOPSIGNAL SIGRTMIN+3",
            'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
        ]) + "\n", {})
        run(["docker", "rmi", imported], env=images.docker_env(host), capture=True)
    shutil.rmtree(rootfs, ignore_errors=True)
    return tag


def _configure_rootfs(root: Path) -> None:
    """What kind's base Dockerfile does after installing its packages."""
    files = kind_dir() / "images" / "base" / "files"
    for src in files.rglob("*"):
        rel = src.relative_to(files)
        if src.is_dir() or rel.parts[0] == "LICENSES" or src.name.startswith("containerd-fuse"):
            continue
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
        executable = rel.parts[:2] in (("usr", "local"), ("kind", "bin"))
        dest.chmod(0o755 if executable else 0o644)
    # Our changes to kind's files, for Debian's containerd 1.6 in a container on these VMs.
    for src in (FILES / "node").rglob("*"):
        if src.is_file():
            dest = root / src.relative_to(FILES / "node")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)
    svc = root / "etc/systemd/system/containerd.service"
    svc.write_text(svc.read_text().replace("/usr/local/bin/containerd", "/usr/bin/containerd"))
    for pattern in ("lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service",
                    "lib/systemd/system/multi-user.target.wants/*", "etc/systemd/system/*.wants/*",
                    "lib/systemd/system/local-fs.target.wants/*",
                    "lib/systemd/system/sockets.target.wants/*udev*",
                    "lib/systemd/system/sockets.target.wants/*initctl*",
                    "lib/systemd/system/basic.target.wants/*"):
        for p in root.glob(pattern):
            p.unlink()
    with open(root / "etc/systemd/journald.conf", "a") as f:
        f.write("ReadKMsg=no\n")
    run(["systemctl", f"--root={root}", "enable", "kubelet.service", "containerd.service",
         "undo-mount-hacks.service"], capture=True)
    run(["systemctl", f"--root={root}", "mask", "systemd-binfmt.service"], capture=True)
    (root / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)
    cni = root / "opt/cni/bin"
    cni.parent.mkdir(parents=True, exist_ok=True)
    if not cni.exists():
        cni.symlink_to("/usr/lib/cni")
    # cri-base.json: containerd's default spec plus kind's product-files hook, no rlimits
    r = run(["chroot", root, "ctr", "oci", "spec"], capture=True)
    spec = json.loads(r.stdout)
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
        {"path": "/kind/bin/mount-product-files.sh"})
    spec["process"].pop("rlimits", None)
    (root / "etc/containerd/cri-base.json").write_text(json.dumps(spec, indent=2) + "\n")
    for p in (root / "var/cache/apt/archives").glob("*.deb"):
        p.unlink()
    shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)


def kubeadm_images(kubeadm: Path, version: str) -> dict[str, str]:
    """{component: image} that kubeadm pulls, e.g. {'etcd': 'registry.k8s.io/etcd:3.6.5-0'}."""
    r = run([kubeadm, "config", "images", "list", "--kubernetes-version", version], capture=True)
    out = {}
    for line in r.stdout.split():
        name = line.rsplit("/", 1)[1].split(":")[0]
        out[name] = line
    for need in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
                 "etcd", "coredns", "pause"):
        if need not in out:
            die(f"kubeadm config images list has no {need}: {r.stdout}")
    return out


def pause_binary(out_dir: Path) -> Path:
    """Kubernetes' own pause.c (from the k8s.io/kubernetes module), compiled static."""
    k = versions()["kubernetes"]
    out = out_dir / f"pause-{k}"
    if out.exists():
        return out
    src = Path(sim.mod_download(f"k8s.io/kubernetes@{k}")["Dir"]) / "build/pause/linux/pause.c"
    out_dir.mkdir(parents=True, exist_ok=True)
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        die("a C compiler (gcc) is needed to build the pause image: apt-get install gcc libc6-dev")
    run([cc, "-Os", "-static", "-Wall", f"-DVERSION=v{k}-ai-stack", "-o", out, src], capture=True)
    run(["strip", out], check=False, capture=True)
    return out


def component_images(host: str, b: dict[str, Path], base: str) -> list[str]:
    """Build the images kubeadm and the storage manifest need; return their tags."""
    v = versions()
    want = kubeadm_images(b["kubeadm"], v["kubernetes"])
    coredns_tag = want["coredns"].rsplit(":", 1)[1]
    if coredns_tag != v["coredns"]:
        die(f"kubeadm {v['kubernetes']} wants coredns {coredns_tag} but versions.json pins "
            f"{v['coredns']}: pin coredns to {coredns_tag}")
    note = "built offline from source for the kind test cluster"
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
        images.scratch_binary(host, want[name], b[name], f"/usr/local/bin/{name}",
                              entrypoint=[f"/usr/local/bin/{name}"], comment=f"{name}: {note}")
    etcd_ver = sim.Plan().etcd_version()
    images.scratch_binary(host, want["etcd"], b["etcd"], "/usr/local/bin/etcd",
                          entrypoint=["/usr/local/bin/etcd"],
                          comment=f"etcd {etcd_ver} (what Kubernetes' go.mod requires), tagged as "
                                  f"kubeadm's {want['etcd'].rsplit(':', 1)[1]}: {note}")
    # Root, with kubeadm's NET_BIND_SERVICE (drop ALL, no privilege escalation, read-only root):
    # upstream runs as nonroot with `setcap cap_net_bind_service=+ep /coredns`, which a
    # FROM scratch image built without a RUN step cannot do.
    images.scratch_binary(host, want["coredns"], b["coredns"], "/coredns",
                          entrypoint=["/coredns"], comment=f"coredns: {note}")
    images.scratch_binary(host, want["pause"], pause_binary(KIND_CACHE / "bin"), "/pause",
                          entrypoint=["/pause"], user="65535:65535", comment=f"pause: {note}")
    images.build(host, want["kube-proxy"], "\n".join([
        f"# kube-proxy: {note} (needs iptables, so on the node base)",
        f"FROM {base}", "COPY bin /usr/local/bin/kube-proxy",
        'ENTRYPOINT ["/usr/local/bin/kube-proxy"]']) + "\n", {"bin": b["kube-proxy"]})
    images.scratch_binary(host, storage_images()["provisioner"], b["local-path-provisioner"],
                          "/usr/local/bin/local-path-provisioner",
                          entrypoint=["/usr/local/bin/local-path-provisioner"],
                          comment=f"local-path-provisioner: {note}")
    images.build(host, storage_images()["helper"], "\n".join([
        "# local-path-provisioner's helper pod image: Debian's busybox-static (mkdir, rm)",
        "FROM scratch", "COPY rootfs/ /", "ENV PATH=/bin", 'ENTRYPOINT ["/bin/sh"]']) + "\n",
        images.busybox_files("rootfs/"))
    return sorted(want.values()) + sorted(storage_images().values())


def full_ref(tag: str) -> str:
    """containerd's name for a Docker tag: go-backend:1 is docker.io/library/go-backend:1."""
    first = tag.split("/", 1)[0]
    if "/" not in tag:
        return f"docker.io/library/{tag}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{tag}"
    return tag


def storage_images() -> dict[str, str]:
    lv = versions()["local_path_provisioner"]
    return {"provisioner": f"docker.io/rancher/local-path-provisioner:{lv}",
            "helper": f"{LOCAL_REPO}/local-path-helper:busybox"}


def storage_manifest() -> str:
    """kind's own default storage manifest (from the pinned kind module's source), with the
    locally built provisioner and helper images."""
    src = (kind_dir() / "pkg/build/nodeimage/const_storage.go").read_text()
    marker = "const defaultStorageManifest = `"
    if marker not in src:
        die(f"kind {versions()['kind']}: defaultStorageManifest not found in const_storage.go")
    s = storage_images()
    body = (src[src.index(marker) + len(marker):]
            .replace("` + storageProvisionerImage + `", s["provisioner"])
            .replace("` + storageHelperImage + `", s["helper"]))
    return body[:body.index("`")].lstrip("\n")


def node_tag(host: str, b: dict[str, Path], base: str, tags: list[str]) -> str:
    h = hashlib.sha256(base.encode())
    for t in tags:
        h.update((t + (images.image_id(host, t) or "")).encode())
    for n in ("kubeadm", "kubelet", "kubectl", "crictl"):
        h.update(str(b[n]).encode())
    h.update(storage_manifest().encode())
    return f"{LOCAL_REPO}/kind-node:{versions()['kubernetes']}-{h.hexdigest()[:12]}"


def build_node(host: str, b: dict[str, Path], base: str) -> str:
    """The kind node image on ``base`` (build_base's tag), with the Kubernetes binaries ``b``."""
    with Timer("component images"):
        tags = component_images(host, b, base)
    tag = node_tag(host, b, base, tags)
    if images.image_id(host, tag):
        log(f"node image: cached ({tag})")
        return tag
    env = images.docker_env(host)
    name = f"kindcluster-build-{int(time.time())}"
    t0 = time.monotonic()
    run(["docker", "run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep",
         "--security-opt", "seccomp=unconfined", base, "infinity"], env=env, capture=True)
    try:
        def sh(script: str, **kw):
            return run(["docker", "exec", "-i", name, "bash", "-c", script], env=env, **kw)
        bins = {"kubeadm": "/usr/bin", "kubelet": "/usr/bin", "kubectl": "/usr/bin",
                "crictl": "/usr/local/bin"}
        for n, d in bins.items():
            run(["docker", "cp", b[n], f"{name}:{d}/{n}"], env=env, capture=True)
        paths = " ".join(f"{d}/{n}" for n, d in bins.items())
        pause = kubeadm_images(b["kubeadm"], versions()["kubernetes"])["pause"]
        sh(f"chmod 0755 {paths} && chown root:root {paths} && mkdir -p /kind/manifests && "
           f"sed -i 's#^  sandbox_image = .*#  sandbox_image = \"{pause}\"#' "
           "/etc/containerd/config.toml", capture=True)
        sh("cat > /kind/version", input_text=versions()["kubernetes"], capture=True)
        sh("cat > /kind/manifests/default-storage.yaml", input_text=storage_manifest(),
           capture=True)
        sh("nohup containerd > /dev/null 2>&1 &", capture=True)
        sh("for i in $(seq 50); do [ -S /run/containerd/containerd.sock ] && ctr version "
           ">/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1", capture=True)
        save = subprocess.Popen(["docker", "save", *tags], env=env, stdout=subprocess.PIPE)
        r = subprocess.run(["docker", "exec", "-i", name, "ctr", "--namespace=k8s.io", "images",
                            "import", "--all-platforms", "--no-unpack", "--digests", "-"], env=env,
                           stdin=save.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
        save.stdout.close()
        if save.wait() != 0 or r.returncode != 0:
            die(f"importing the component images into the node image failed: {r.stderr}")
        # Pinned, so the kubelet's image garbage collection never removes them (Debian's
        # ctr 1.6 has no `import --label`, kind's builder uses; label them afterwards).
        refs = " ".join(full_ref(t) for t in tags)
        sh(f"for r in {refs}; do ctr -n k8s.io images label $r io.cri-containerd.pinned=pinned "
           ">/dev/null; done", capture=True)
        sh("pkill containerd; for i in $(seq 50); do pgrep containerd >/dev/null || exit 0; "
           "sleep 0.2; done", capture=True, check=False)
        run(["docker", "commit",
             "--change", 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]',
             "--change", 'ENV HTTP_PROXY="" HTTPS_PROXY="" NO_PROXY=""', name, tag],
            env=env, capture=True)
    finally:
        run(["docker", "rm", "-f", "-v", name], env=env, capture=True, check=False)
    log(f"node image: built in {time.monotonic() - t0:.0f}s ({tag})")
    prune(host, keep=(tag, base))
    return tag


def prune(host: str, keep: tuple[str, ...]) -> None:
    """Remove our older node and base images (1.4 GB each) once a new one is built."""
    env = images.docker_env(host)
    r = run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
             f"{LOCAL_REPO}/kind-*"], env=env, capture=True, check=False)
    old = [t for t in r.stdout.split() if t not in keep]
    if old:
        run(["docker", "rmi", *old], env=env, capture=True, check=False)
        log(f"removed older images: {', '.join(old)}")


def published(host: str) -> str | None:
    """kind's published node image, pinned by digest, if it is here or can be pulled."""
    ref = versions()["kind_node_image_published"]
    if images.image_id(host, ref):
        return ref
    try:
        r = subprocess.run(["docker", "pull", ref], env=images.docker_env(host),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           timeout=int(os.environ.get("AI_STACK_KIND_PULL_TIMEOUT", "600")))
    except subprocess.TimeoutExpired:
        log(f"pulling {ref} timed out; building the node image offline instead")
        return None
    if r.returncode == 0:
        return ref
    log(f"cannot pull {ref} ({r.stderr.strip().splitlines()[-1] if r.stderr.strip() else 'no registry'}); "
        "building the node image offline instead")
    return None
