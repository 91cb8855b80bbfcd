"""The real Docker Model Runner image: built from its Go module, with llama-server built here.

The binary is `github.com/docker/model-runner` at the version versions.json pins
(`docker_model_runner`), built like upstream's Dockerfile (`go build -ldflags "-s -w -X
main.Version=<version>" .` in the module) except with CGO off, so it is static: nothing in the
server needs cgo on Linux. The module's go.mod asks for a newer Go than the machine may have; the
build runs with GOTOOLCHAIN=auto, which fetches that toolchain through the Go module proxy.

The image mirrors the published one (the module's Dockerfile: FROM the llama.cpp server image,
`useradd --system modelrunner`, `USER modelrunner`), built FROM scratch since no base image can be
pulled:
- /app/model-runner and /app/llama-server (llamaserver.py) with the libraries ldd names;
  LLAMA_SERVER_PATH=/app is the directory the runner looks in, and /app is the working directory,
  where the runner also creates its per-model sockets (inference-runner-<n>.sock, a relative
  path): /app must be writable by the user;
- the environment the Dockerfile sets: MODEL_RUNNER_PORT=12434, MODELS_PATH=/models,
  LLAMA_SERVER_PATH=/app, LD_LIBRARY_PATH=/app, MODEL_RUNNER_SOCK, HOME=/home/modelrunner;
- USER as a number, UID:GID (999:999). The published image's user is a name; its base is the
  llama.cpp server image (Ubuntu), where `groupadd --system` and `useradd --system` take the
  highest free id in SYS_UID_MIN..SYS_UID_MAX (100..999) and no other account sits at the top of
  that range, so modelrunner is 999:999 there (the only ids below 1000 that account could get).
  A pod with runAsNonRoot needs that number as runAsUser;
- /etc/passwd and /etc/group with that user (and group video, as upstream's `-G video`), the
  CA bundle (the runner pulls over HTTPS from real registries), and /tmp (the runner's log
  directory is /tmp/model-runner-logs).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import images, llamaserver
from .common import KIND_CACHE, Timer, log, run, versions
from testcluster import build as sim

MODULE = "github.com/docker/model-runner"
NAME = "model-runner"
UID = 999
GID = 999
VIDEO_GID = 44  # Debian's and Ubuntu's fixed gid of the video group
PORT = 12434
MODELS_PATH = "/models"
APP = "/app"
HOME = "/home/modelrunner"
SOCKET_DIR = "/var/run/model-runner"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL = ("Docker Model Runner {v} built from source (Go module {m}), llama-server from "
         "llama-cpp-python {l}")


def version() -> str:
    return versions()["docker_model_runner"]


def image_tag() -> str:
    """The published image's name at the version built here."""
    return f"docker/model-runner:{version()}"


def binary() -> Path:
    return sim.bin_path(NAME, version())


def go_env() -> dict:
    env = sim.go_env()
    env["GOTOOLCHAIN"] = "auto"  # go.mod's `go` line may be newer than the local Go
    return env


def build_binary() -> Path:
    out = binary()
    if out.exists():
        log(f"{NAME}: cached ({out})")
        return out
    env = go_env()
    r = run(["go", "mod", "download", "-json", f"{MODULE}@{version()}"], env=env, cwd=sim.CACHE,
            capture=True)
    src = Path(json.loads(r.stdout)["Dir"])
    # Built in a copy of the module (its go.mod has a replace directive that only applies there).
    d = KIND_CACHE / "src" / f"{NAME}-{version()}"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    for p in [d, *d.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)  # the module cache is read-only
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(NAME + ".tmp")
    log(f"{NAME} {version()}: building (fetches the Go toolchain go.mod asks for) ...")
    with Timer(f"{NAME} build"):
        run(["go", "build", "-trimpath", "-ldflags", f"-s -w -X main.Version={version()}",
             "-o", tmp, "."], env=env, cwd=d)
    tmp.rename(out)
    shutil.rmtree(d, ignore_errors=True)
    return out


def rootfs(runner: Path, llama_server: Path) -> dict[str, Path | bytes | str]:
    """The image's files: root-owned under rootfs/, the user's under owned/."""
    files: dict[str, Path | bytes | str] = {
        "owned/app/model-runner": runner,
        "owned/app/llama-server": llama_server,
        f"owned{MODELS_PATH}": "dir:755",
        f"owned{HOME}": "dir:755",
        f"owned{SOCKET_DIR}": "dir:755",
        "rootfs/tmp": "dir:1777",
        "rootfs/etc/ssl/certs/ca-certificates.crt": CA_BUNDLE,
        "rootfs/etc/passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                              f"modelrunner:x:{UID}:{GID}::{HOME}:/usr/sbin/nologin\n").encode(),
        "rootfs/etc/group": (f"root:x:0:\nvideo:x:{VIDEO_GID}:modelrunner\n"
                             f"modelrunner:x:{GID}:\n").encode(),
    }
    files.update(images.shared_libraries(llama_server, "rootfs/"))
    return files


def dockerfile() -> str:
    v = version()
    label = LABEL.format(v=v, m=MODULE, l=llamaserver.version())
    return "\n".join([
        f"# {label}; user {UID}:{GID} as the published image's `useradd --system modelrunner`",
        "FROM scratch",
        "COPY rootfs/ /",
        f"COPY --chown={UID}:{GID} owned/ /",
        f'LABEL {images.STANDIN_LABEL}="{label}"',
        f"ENV MODEL_RUNNER_SOCK={SOCKET_DIR}/model-runner.sock",
        f"ENV MODEL_RUNNER_PORT={PORT}",
        f"ENV LLAMA_SERVER_PATH={APP}",
        f"ENV LD_LIBRARY_PATH={APP}",
        f"ENV HOME={HOME}",
        f"ENV MODELS_PATH={MODELS_PATH}",
        f"WORKDIR {APP}",
        f"USER {UID}:{GID}",
        f"EXPOSE {PORT}",
        f'ENTRYPOINT ["{APP}/model-runner"]',
    ]) + "\n"


def build_image(host: str) -> str:
    """Build the runner and llama-server if needed, then the image; return its tag."""
    tag = image_tag()
    runner = build_binary()
    llama = llamaserver.build()
    images.build(host, tag, dockerfile(), rootfs(runner, llama))
    r = run(["docker", "image", "inspect", "--format", "{{.Size}}", tag],
            env=images.docker_env(host), capture=True)
    log(f"{tag}: built ({int(r.stdout) >> 20} MiB)")
    return tag
