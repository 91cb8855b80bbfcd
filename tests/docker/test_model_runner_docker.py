"""The real Docker Model Runner with plain `docker run`: pull from a local registry, then infer.

No Kubernetes: on a user-defined Docker network, the registry built from source
(kindcluster.modelregistry) holds a tiny GGUF model generated here (kindcluster.tinymodel), pushed
as the runner's model-distribution code expects (kindcluster.modelpush); the runner built from
source (kindcluster.modelrunner, llama-server inside) has the registry as its Docker Hub mirror
(MODEL_RUNNER_REGISTRY_MIRRORS=http://<registry>:5000), so the model keeps its `ai/...` name.
Asserted: GET /models/<model> is 404 before and 200 after POST /models/create {"from": <model>};
the runner fetched the weights from the mirror (registry access log); the files are under
MODELS_PATH, owned by the runner's uid; POST /engines/v1/chat/completions returns generated text;
run as the model_runner role runs it (read-only root), chat needs a writable working directory,
and the model survives a new container on the same volume without a new pull.
Timings are printed (pytest -s) and written to .test-logs/model-runner-docker.json.

Opt-in (the first run builds llama-server, about 5 min on 2 cores, and the images; later runs use
the cache): AI_STACK_DOCKER_TESTS=1 with a Docker engine reachable (DOCKER_HOST, kindcluster's own
engine, or the system one):
    AI_STACK_DOCKER_TESTS=1 PYTHONPATH=tools .venv/bin/python -m pytest -q -s tests/docker
Containers and the network are named with AI_STACK_DOCKER_TEST_PREFIX (default `dmr-test-`) and
removed afterwards. Ports are published on 127.0.0.1 only.
"""

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "tools"))

from kindcluster import engine, images, modelpush, modelregistry, modelrunner  # noqa: E402
from kindcluster import tinymodel  # noqa: E402

PREFIX = os.environ.get("AI_STACK_DOCKER_TEST_PREFIX", "dmr-test-")
MODEL = "ai/tiny-random-llama:f32"
TIMINGS_FILE = REPO / ".test-logs" / "model-runner-docker.json"


def docker_host() -> str | None:
    if os.environ.get("AI_STACK_DOCKER_TESTS") != "1":
        return None
    try:
        return engine.find()[0]
    except SystemExit:
        return None


HOST = docker_host()
pytestmark = pytest.mark.skipif(
    HOST is None, reason="opt-in: AI_STACK_DOCKER_TESTS=1 and a reachable Docker engine")


def docker(*args, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], env=images.docker_env(HOST), capture_output=True,
                       check=False)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.stderr.decode(errors='replace')}")
    return r


def http(method: str, url: str, body: dict | None = None, timeout: float = 30):
    """(status, body bytes); HTTP errors are answers, not exceptions."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def published(name: str, port: int) -> str:
    out = docker("port", name, str(port)).stdout.decode().split()[0]
    return "http://" + out.replace("0.0.0.0", "127.0.0.1")


def wait_http(url: str, seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if http("GET", url, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {seconds}s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Images built, registry with the model, runner started; removed afterwards."""
    timings = {}
    t0 = time.monotonic()
    runner_image = modelrunner.build_image(HOST)
    registry_image = modelregistry.build_image(HOST)
    timings["images_s"] = round(time.monotonic() - t0, 1)
    net, reg, run = f"{PREFIX}net", f"{PREFIX}registry", f"{PREFIX}runner"
    for name in (run, reg):
        docker("rm", "-f", name, check=False)
    docker("network", "rm", net, check=False)
    docker("network", "create", net)
    try:
        docker("run", "-d", "--name", reg, "--network", net, "-p", "127.0.0.1::5000",
               registry_image)
        reg_url = published(reg, modelregistry.PORT)
        wait_http(reg_url + "/v2/")
        gguf = tinymodel.write(tmp_path_factory.mktemp("model") / "model.gguf")
        t = time.monotonic()
        manifest_digest = modelpush.push(reg_url, MODEL, gguf,
                                         parameters=f"{tinymodel.parameters() / 1000:.2f}K",
                                         context_size=tinymodel.N_CTX)
        timings["push_s"] = round(time.monotonic() - t, 2)
        t = time.monotonic()
        docker("run", "-d", "--name", run, "--network", net, "-p", "127.0.0.1::12434",
               "-e", f"MODEL_RUNNER_REGISTRY_MIRRORS=http://{reg}:{modelregistry.PORT}",
               runner_image)
        url = published(run, modelrunner.PORT)
        wait_http(url + "/")
        timings["runner_start_s"] = round(time.monotonic() - t, 2)
        yield {"url": url, "runner": run, "registry": reg, "gguf": gguf, "timings": timings,
               "manifest_digest": manifest_digest}
    finally:
        for name in (run, reg):
            if os.environ.get("AI_STACK_DOCKER_TEST_LOGS"):
                print(docker("logs", name, check=False).stderr.decode(errors="replace"))
            docker("rm", "-f", name, check=False)
        docker("network", "rm", net, check=False)
        TIMINGS_FILE.parent.mkdir(exist_ok=True)
        TIMINGS_FILE.write_text(json.dumps(timings, indent=2) + "\n")
        print(f"\ntimings: {json.dumps(timings)}")


def test_runner_runs_as_the_published_images_numeric_user(stack):
    user = docker("inspect", "--format", "{{.Config.User}}", stack["runner"]).stdout.decode()
    assert user.strip() == f"{modelrunner.UID}:{modelrunner.GID}"
    top = docker("top", stack["runner"], "-o", "pid,uid,args").stdout.decode().splitlines()
    assert any(ln.split()[1] == str(modelrunner.UID) and "model-runner" in ln for ln in top[1:])
    status, body = http("GET", stack["url"] + "/")
    assert (status, body.strip()) == (200, b"Docker Model Runner is running")


def test_pull_from_the_mirror_then_chat(stack):
    url, t = stack["url"], stack["timings"]
    model_url = f"{url}/models/{MODEL}"
    assert http("GET", model_url)[0] == 404, "model present before the pull"
    start = time.monotonic()
    status, body = http("POST", url + "/models/create", {"from": MODEL}, timeout=300)
    t["pull_s"] = round(time.monotonic() - start, 2)
    assert status == 200, body
    status, body = http("GET", model_url)
    assert status == 200, body
    info = json.loads(body)
    assert f"docker.io/{MODEL}" in info.get("tags", []) or MODEL in info.get("tags", []), info

    # The weights came from the mirror: the registry's access log has the blob GET.
    gguf_digest = modelpush.digest(stack["gguf"].read_bytes())
    r = docker("logs", stack["registry"])
    log = (r.stdout + r.stderr).decode(errors="replace")  # the access log is on stdout
    assert f"GET /v2/ai/tiny-random-llama/blobs/{gguf_digest}" in log

    # The files are under MODELS_PATH, owned by the runner's user.
    tar = tarfile.open(fileobj=io.BytesIO(
        docker("cp", f"{stack['runner']}:{modelrunner.MODELS_PATH}", "-").stdout))
    members = tar.getmembers()
    t["models_path_files"] = sorted(f"{m.name} {m.uid}:{m.gid} {m.size}" for m in members
                                    if m.isfile())
    weights = [m for m in members if m.isfile() and m.size == stack["gguf"].stat().st_size]
    assert weights, t["models_path_files"]
    assert all(m.uid == modelrunner.UID for m in members if m.isfile())

    start = time.monotonic()
    status, body = http("POST", url + "/engines/v1/chat/completions", {
        "model": MODEL, "max_tokens": 8,
        "messages": [{"role": "user", "content": "Hello"}]}, timeout=300)
    t["first_chat_s"] = round(time.monotonic() - start, 2)
    assert status == 200, body
    reply = json.loads(body)
    text = reply["choices"][0]["message"]["content"]
    t["reply"] = text
    t["usage"] = reply.get("usage")
    assert text, reply
    assert reply["usage"]["completion_tokens"] > 0, reply


def run_like_the_role(stack, name: str, volume: str, workdir: str) -> str:
    """A runner as the model_runner role runs it: read-only root file system, emptyDirs (tmpfs)
    for /tmp and the home, the model volume at MODELS_PATH; returns its URL."""
    docker("rm", "-f", name, check=False)
    docker("run", "-d", "--name", name, "--network", f"{PREFIX}net", "-p", "127.0.0.1::12434",
           "--read-only", "--tmpfs", "/tmp", "--tmpfs", modelrunner.HOME,
           "-v", f"{volume}:{modelrunner.MODELS_PATH}", "-w", workdir,
           "-e", f"MODEL_RUNNER_REGISTRY_MIRRORS=http://{stack['registry']}:{modelregistry.PORT}",
           modelrunner.image_tag())
    url = published(name, modelrunner.PORT)
    wait_http(url + "/")
    return url


def chat(url: str):
    return http("POST", url + "/engines/v1/chat/completions", {
        "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=300)


def test_read_only_root_needs_a_writable_working_directory_and_the_volume_keeps_the_model(stack):
    """llama-server listens on inference-runner-<n>.sock in the runner's working directory (the
    image's /app): with a read-only root file system, chat fails unless the working directory is
    writable (here /tmp, as a pod's workingDir on an emptyDir). The model stays on its volume: a
    new container answers GET /models/<model> 200 at once, and nothing is fetched again."""
    name, volume = f"{PREFIX}runner-ro", f"{PREFIX}models"
    docker("volume", "rm", "-f", volume, check=False)
    try:
        url = run_like_the_role(stack, name, volume, modelrunner.APP)
        assert http("POST", url + "/models/create", {"from": MODEL}, timeout=300)[0] == 200
        status, body = chat(url)
        assert status == 500 and b"inference-runner-0.sock" in body, (status, body)

        r = docker("logs", stack["registry"])
        fetched = (r.stdout + r.stderr).decode(errors="replace").count("GET /v2/ai/")
        url = run_like_the_role(stack, name, volume, "/tmp")
        assert http("GET", f"{url}/models/{MODEL}")[0] == 200
        status, body = chat(url)
        assert status == 200, body
        assert json.loads(body)["choices"][0]["message"]["content"]
        r = docker("logs", stack["registry"])
        assert (r.stdout + r.stderr).decode(errors="replace").count("GET /v2/ai/") == fetched
    finally:
        docker("rm", "-f", name, check=False)
        docker("volume", "rm", "-f", volume, check=False)
