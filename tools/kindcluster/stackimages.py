"""The images the stack's roles use, built locally under the names the roles use.

The kind cluster here has no registry to pull from, so `up` builds every image the roles
reference (names read from the roles' defaults, the one place they are set):
- metrics-server: built from source at the version the autoscaling role pins (a real build);
- the pre-pull sidecar's curl image and the load test's busybox image: TEST STAND-INS made of
  Debian's curl and busybox-static;
- Docker Model Runner: the real one, built from its Go module with llama-server
  (modelrunner.py), at the version versions.json pins, which the role's image tag must name;
- the chatbot's go-backend and react-frontend: TEST STAND-INS (tests/standins), built into the
  local Docker image store only (never over an image of the same name that is not ours), so the
  chatbot role's own loading path puts them on the nodes.
The first four are loaded into every node at `up`, as a registry mirror would serve them.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from . import engine, images, modelrunner
from testcluster import build as sim
from .common import KIND_CACHE, REPO, die, log, run

STANDINS = REPO / "tests" / "standins"
# Debian's busybox 1.35 `wget -T N` dies with SIGSEGV (in a container and on the host alike);
# the stand-in's wget applies the timeout with busybox's `timeout` instead.
WGET_WRAPPER = """#!/bin/sh
t=
for a do
  shift
  if [ "$t" = next ]; then t=$a; continue; fi
  case $a in
    -T) t=next; continue ;;
    -T*) t=${a#-T}; continue ;;
  esac
  set -- "$@" "$a"
done
if [ -n "$t" ]; then exec /bin/busybox timeout "$t" /bin/busybox wget "$@"; fi
exec /bin/busybox wget "$@"
"""


def role_default(role: str, var: str) -> str:
    """A scalar from roles/<role>/defaults/main.yml (plain `name: value` lines)."""
    text = (REPO / "roles" / role / "defaults" / "main.yml").read_text()
    m = re.search(rf"^{re.escape(var)}:\s*(\S+)\s*$", text, re.M)
    if not m:
        die(f"{var} not found in roles/{role}/defaults/main.yml")
    return m.group(1).strip("'\"")


def names() -> dict[str, str]:
    return {
        "metrics-server": role_default("autoscaling", "autoscaling_metrics_server_image"),
        "loadtest": role_default("autoscaling", "autoscaling_loadtest_image"),
        "curl": role_default("model_runner", "model_runner_prepull_image"),
        "model-runner": role_default("model_runner", "model_runner_image"),
        "go-backend": role_default("chatbot", "chatbot_backend_image"),
        "react-frontend": role_default("chatbot", "chatbot_frontend_image"),
    }


def standin_binary(name: str) -> Path:
    out = KIND_CACHE / "standins" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    run(["go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, f"./cmd/{name}"],
        env=sim.go_env(), cwd=STANDINS, capture=True)
    return out


def standin_image(host: str, name: str, tag: str) -> None:
    ctx = STANDINS / "images" / name
    files = {p.name: p for p in ctx.iterdir() if p.is_file()}
    dockerfile = files.pop("Dockerfile").read_text()
    files["app"] = standin_binary(name)
    images.build(host, tag, dockerfile, files)


def is_ours(host: str, tag: str) -> bool:
    r = subprocess.run(["docker", "image", "inspect", "--format",
                        "{{index .Config.Labels \"" + images.STANDIN_LABEL + "\"}}", tag],
                       env=images.docker_env(host), stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return r.returncode == 0 and "STAND-IN" in r.stdout


def build_all(host: str, metrics_server: Path) -> tuple[list[str], list[str]]:
    """Build the images; return (tags to preload into the nodes, chatbot tags for the role)."""
    engine.require("busybox", "curl")
    n = names()
    curl_version = run(["curl", "--version"], capture=True).stdout.split()[1]
    bb_version = run(["busybox"], capture=True, check=False).stdout.split()[1]
    images.scratch_binary(host, n["metrics-server"], metrics_server, "/metrics-server",
                          entrypoint=["/metrics-server"], user="65534:65534",
                          comment="metrics-server built from source at the pinned version")
    files = images.busybox_files("rootfs/")
    files.update(images.dynamic_binary_files("curl", "rootfs/"))
    files["rootfs/etc/ssl/certs/ca-certificates.crt"] = Path("/etc/ssl/certs/ca-certificates.crt")
    images.build(host, n["curl"], "\n".join([
        f"# TEST STAND-IN for {n['curl']}: Debian's curl {curl_version} with busybox {bb_version}",
        "FROM scratch", "COPY rootfs/ /", "ENV PATH=/usr/bin:/bin",
        f'LABEL {images.STANDIN_LABEL}="TEST STAND-IN for {n["curl"]}"',
        "USER 100:101", 'ENTRYPOINT ["/usr/bin/curl"]']) + "\n", files)
    bb = images.busybox_files("rootfs/")
    bb["rootfs/bin/wget"] = WGET_WRAPPER.encode()
    # busybox's own sh runs its applets directly (not through PATH), which would bypass the
    # wrapper: /bin/sh is Debian's dash.
    dash = images.dynamic_binary_files("dash", "rootfs/")
    bb["rootfs/bin/sh"] = dash.pop("rootfs/usr/bin/dash")
    bb.update(dash)
    images.build(host, n["loadtest"], "\n".join([
        f"# TEST STAND-IN for {n['loadtest']}: Debian's busybox-static {bb_version}, whose wget "
        "crashes with -T, so /bin/wget applies -T with `timeout`; /bin/sh is Debian's dash",
        "FROM scratch", "COPY rootfs/ /", "ENV PATH=/bin",
        f'LABEL {images.STANDIN_LABEL}="TEST STAND-IN for {n["loadtest"]}"',
        'CMD ["sh"]']) + "\n", bb)
    if n["model-runner"] != modelrunner.image_tag():
        die(f"model_runner_image in roles/model_runner/defaults/main.yml is {n['model-runner']}, but "
            f"the runner built here is {modelrunner.image_tag()} (versions.json docker_model_runner): "
            "make them agree")
    modelrunner.build_image(host)
    chatbot = []
    for name in ("go-backend", "react-frontend"):
        tag = n[name]
        if images.image_id(host, tag) and not is_ours(host, tag):
            log(f"{tag}: your own image is in the Docker image store; not replacing it")
        else:
            standin_image(host, name, tag)
        chatbot.append(tag)
    preload = [n["metrics-server"], n["curl"], n["loadtest"], n["model-runner"]]
    return preload, chatbot
