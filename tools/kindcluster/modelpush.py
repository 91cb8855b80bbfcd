"""Push a GGUF file to an OCI registry as the model artifact Docker Model Runner pulls.

What the runner's model-distribution code (pkg/distribution in github.com/docker/model-runner)
expects, and what `docker model package` writes for one GGUF file:
- an OCI image manifest (application/vnd.oci.image.manifest.v1+json), schemaVersion 2;
- its config blob of media type application/vnd.docker.ai.model.config.v0.1+json (the runner
  refuses other config types except v0.2 and CNCF ModelPack), JSON
  {"config": {"format": "gguf", "architecture", "parameters", "quantization", "size",
  "context_size"}, "descriptor": {"created"}, "rootfs": {"type": "rootfs", "diff_ids": [...]}};
  the diff_ids are the layers' sha256 digests (the layers are not compressed), and the store
  names the blobs by them;
- one layer per file; the GGUF weights as application/vnd.docker.ai.gguf.v3, annotated with the
  file's name (org.cncf.model.filepath) as the builder does.
The runner reads the chat template from the GGUF file itself (llama-server --jinja).

Registry API used (OCI distribution spec, monolithic uploads): HEAD the blob, else POST
/v2/<name>/blobs/uploads/ and PUT the returned location with ?digest=; then PUT the manifest under
its tag. Plain HTTP, no auth: the local test registry (modelregistry.py).

`python -m kindcluster.modelpush http://127.0.0.1:5000 ai/name:tag model.gguf`
"""
from __future__ import annotations

import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.docker.ai.model.config.v0.1+json"
GGUF_TYPE = "application/vnd.docker.ai.gguf.v3"
ANNOTATION_FILEPATH = "org.cncf.model.filepath"
ANNOTATION_UNTESTED = "org.cncf.model.file.mediatype.untested"
# A fixed creation time, so the same file always gives the same manifest digest.
CREATED = "2026-01-01T00:00:00Z"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config_blob(gguf_digest: str, *, architecture: str, parameters: str, quantization: str,
                size: str, context_size: int | None) -> bytes:
    cfg: dict = {"format": "gguf", "quantization": quantization, "parameters": parameters,
                 "architecture": architecture, "size": size}
    if context_size:
        cfg["context_size"] = context_size
    return json.dumps({"config": cfg, "descriptor": {"created": CREATED},
                       "rootfs": {"type": "rootfs", "diff_ids": [gguf_digest]}},
                      separators=(",", ":"), sort_keys=True).encode()


def manifest(config: bytes, gguf: bytes, filename: str) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": GGUF_TYPE, "digest": digest(gguf), "size": len(gguf),
                    "annotations": {ANNOTATION_FILEPATH: filename,
                                    ANNOTATION_UNTESTED: "false"}}],
    }, separators=(",", ":"), sort_keys=True).encode()


class Registry:
    """The few calls of the OCI distribution API a push needs."""

    def __init__(self, base: str, timeout: float = 60) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, url: str, data: bytes | None = None,
                headers: dict | None = None):
        if not url.startswith("http"):
            url = self.base + url
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            return urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            if method == "HEAD" and e.code == 404:
                return e
            raise RuntimeError(f"{method} {url}: {e.code} {e.read()[:300]!r}") from None

    def push_blob(self, repo: str, data: bytes) -> str:
        d = digest(data)
        if self.request("HEAD", f"/v2/{repo}/blobs/{d}").status == 200:
            return d
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", b"")
        location = urllib.parse.urljoin(self.base + "/", r.headers["Location"])
        sep = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{sep}digest={urllib.parse.quote(d)}", data,
                     {"Content-Type": "application/octet-stream"})
        return d

    def push_manifest(self, repo: str, tag: str, body: bytes) -> str:
        r = self.request("PUT", f"/v2/{repo}/manifests/{tag}", body,
                         {"Content-Type": MANIFEST_TYPE})
        return r.headers.get("Docker-Content-Digest", digest(body))


def split_reference(ref: str) -> tuple[str, str]:
    """'ai/name:tag' -> ('ai/name', 'tag'); the tag defaults to latest."""
    repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    return repo, tag


def push(registry: str, ref: str, gguf_path: Path, *, architecture: str = "llama",
         parameters: str = "", quantization: str = "F32", context_size: int | None = None) -> str:
    """Push `gguf_path` as model `ref` (e.g. ai/tiny:f32) to `registry` (http://host:port);
    return the manifest digest."""
    repo, tag = split_reference(ref)
    gguf = gguf_path.read_bytes()
    size = f"{len(gguf) / 1000:.2f}KB" if len(gguf) < 10**6 else f"{len(gguf) / 10**6:.2f}MB"
    config = config_blob(digest(gguf), architecture=architecture, parameters=parameters,
                         quantization=quantization, size=size, context_size=context_size)
    reg = Registry(registry)
    reg.push_blob(repo, gguf)
    reg.push_blob(repo, config)
    return reg.push_manifest(repo, tag, manifest(config, gguf, gguf_path.name))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.strip().splitlines()[-1])
    print(push(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
