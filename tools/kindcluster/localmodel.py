"""The model the local kind cluster serves: a registry container beside the nodes, holding a tiny
GGUF model made here, that the real Docker Model Runner pulls as a mirror of Docker Hub.

- The registry (modelregistry.py, built from source) runs as the container `desktop-model-registry`
  on kind's Docker network, its storage in a Docker volume of the same name. Pods reach it by
  that name: CoreDNS forwards to the node's resolver, Docker's, which knows the containers of
  the network; the node masquerades pod traffic leaving the pod network.
- The model `ai/tiny-random-llama:f32` (tinymodel.py; fixed seed, so the same file on every run)
  is pushed there once (modelpush.py), as the runner's model-distribution code pulls it.
- `deploy_vars()` are the variables a deploy to this cluster needs: the model's name and the
  registry as the runner's mirror (`model_runner_registry_mirrors`, which also opens the
  registry's port in the runner's NetworkPolicy). `make deploy` passes them when it deploys to
  this cluster; `python -m kindcluster vars` prints them for `ansible-playbook -e`.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from . import images, modelpush, modelregistry, tinymodel
from .common import CLUSTER_NAME, KIND_CACHE, die, log, run

CONTAINER = f"{CLUSTER_NAME}-model-registry"
VOLUME = CONTAINER
NETWORK = "kind"
MODEL = f"ai/{tinymodel.NAME}:f32"
MIRROR = f"http://{CONTAINER}:{modelregistry.PORT}"


def deploy_vars() -> dict:
    return {"ai_stack_model_name": MODEL, "model_runner_registry_mirrors": [MIRROR]}


def _docker(host: str, *args: str, check: bool = True):
    return run(["docker", *args], env=images.docker_env(host), capture=True, check=check)


def address(host: str) -> str | None:
    """http://<ip>:5000 of the running registry, as this machine reaches it (the bridge is local)."""
    r = _docker(host, "inspect", "--format", "{{.State.Running}} {{(index .NetworkSettings.Networks \""
                + NETWORK + "\").IPAddress}}", CONTAINER, check=False)
    running, _, ip = r.stdout.strip().partition(" ")
    return f"http://{ip}:{modelregistry.PORT}" if r.returncode == 0 and running == "true" and ip else None


def _answers(url: str) -> int | None:
    try:
        req = urllib.request.Request(url, method="HEAD", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def start(host: str) -> str:
    """Start (or keep) the registry on kind's network; return its address from this machine."""
    image = modelregistry.build_image(host)
    url = address(host)
    current = _docker(host, "inspect", "--format", "{{.Config.Image}}", CONTAINER, check=False).stdout.strip()
    if url is None or current != image:
        _docker(host, "rm", "-f", CONTAINER, check=False)
        _docker(host, "run", "-d", "--name", CONTAINER, "--network", NETWORK, "--restart", "unless-stopped",
                "-v", f"{VOLUME}:{modelregistry.STORAGE}", image)
        url = address(host)
    deadline = time.monotonic() + 60
    while _answers(f"{url}/v2/") != 200:
        if time.monotonic() > deadline:
            die(f"the model registry {CONTAINER} does not answer at {url}/v2/ "
                f"(docker logs {CONTAINER})")
        time.sleep(0.5)
    return url


def push_model(url: str) -> None:
    """Push the tiny model unless the registry has it already."""
    repo, tag = modelpush.split_reference(MODEL)
    if _answers(f"{url}/v2/{repo}/manifests/{tag}") == 200:
        log(f"model registry {CONTAINER}: {MODEL} present")
        return
    path = KIND_CACHE / "models" / f"{tinymodel.NAME}.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    tinymodel.write(path)
    digest = modelpush.push(url, MODEL, path, parameters=f"{tinymodel.parameters() / 1000:.2f}K",
                            context_size=tinymodel.N_CTX)
    log(f"model registry {CONTAINER}: pushed {MODEL} ({path.stat().st_size} bytes, manifest {digest})")


def up(host: str) -> None:
    push_model(start(host))
    log(f"model registry {CONTAINER} on network {NETWORK}: deploy with "
        f"-e '{json.dumps(deploy_vars())}' (make deploy does)")


def remove(host: str) -> None:
    _docker(host, "rm", "-f", CONTAINER, check=False)
    _docker(host, "volume", "rm", "-f", VOLUME, check=False)
