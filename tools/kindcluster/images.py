"""Small images built locally with `docker build` and tagged with the upstream names.

No registry is reachable here, so each image the cluster needs is built from a binary built on
this machine (FROM scratch, no RUN step, no base image to pull), and loaded into the nodes the
way `kind load` does it (docker save | ctr import). Images that stand in for something we cannot
build say so in the first line of their Dockerfile and in an image label.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from . import engine
from .common import die, log, run

STANDIN_LABEL = "org.opencontainers.image.description"


def docker_env(host: str) -> dict:
    env = dict(os.environ)
    env["DOCKER_HOST"] = host
    env.setdefault("DOCKER_BUILDKIT", "0")  # Debian's docker.io has no buildx
    return env


def image_id(host: str, tag: str) -> str | None:
    r = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", tag],
                       env=docker_env(host), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def build(host: str, tag: str, dockerfile: str, files: dict[str, Path | bytes | str]) -> None:
    """docker build of a context made of `files` (context path -> source file, bytes, a
    symlink target given as 'symlink:<target>', or an empty directory as 'dir:<octal mode>')."""
    with tempfile.TemporaryDirectory(prefix="kindcluster-ctx-") as ctx:
        c = Path(ctx)
        for rel, src in files.items():
            dest = c / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, bytes):
                dest.write_bytes(src)
                dest.chmod(0o755 if src.startswith(b"#!") else 0o644)
            elif isinstance(src, str) and src.startswith("symlink:"):
                os.symlink(src.split(":", 1)[1], dest)
            elif isinstance(src, str) and src.startswith("dir:"):
                dest.mkdir(exist_ok=True)
                dest.chmod(int(src.split(":", 1)[1], 8))
            else:
                shutil.copy2(src, dest, follow_symlinks=True)
        (c / "Dockerfile").write_text(dockerfile)
        r = run(["docker", "build", "-q", "-t", tag, str(c)], env=docker_env(host), capture=True,
                check=False)
        if r.returncode != 0:
            die(f"docker build {tag} failed:\n{r.stdout}{r.stderr}")


def scratch_binary(host: str, tag: str, binary: Path, dest: str, *, entrypoint: list[str] | None,
                   user: str = "", comment: str = "", env_path: bool = True) -> None:
    """An image holding one static binary (FROM scratch)."""
    lines = [f"# {comment}" if comment else f"# {tag}: a static binary built from source"]
    lines += ["FROM scratch", f"COPY bin /{dest.lstrip('/')}"]
    if env_path:
        lines.append("ENV PATH=/usr/local/bin:/usr/bin:/bin")
    if user:
        lines.append(f"USER {user}")
    if entrypoint:
        lines.append("ENTRYPOINT " + str(entrypoint).replace("'", '"'))
    build(host, tag, "\n".join(lines) + "\n", {"bin": binary})


def busybox_files(prefix: str = "") -> dict[str, Path | str]:
    """bin/busybox from Debian's busybox-static plus a symlink per applet."""
    engine.require("busybox")
    bb = shutil.which("busybox") or "/bin/busybox"
    r = run([bb, "--list"], capture=True)
    files: dict[str, Path | str] = {f"{prefix}bin/busybox": Path(bb)}
    for applet in r.stdout.split():
        if applet != "busybox":
            files[f"{prefix}bin/{applet}"] = "symlink:busybox"
    return files


def dynamic_binary_files(binary: str, prefix: str = "") -> dict[str, Path]:
    """A dynamically linked host binary with every library `ldd` names (and the loader)."""
    engine.require(binary)
    path = shutil.which(binary)
    files: dict[str, Path] = {f"{prefix}usr/bin/{binary}": Path(path)}
    files.update(shared_libraries(Path(path), prefix))
    return files


def shared_libraries(binary: Path, prefix: str = "") -> dict[str, Path]:
    """Every library `ldd` names for a binary built on this machine, and the loader, at the
    paths the binary looks for them."""
    files: dict[str, Path] = {}
    r = run(["ldd", binary], capture=True)
    for line in r.stdout.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if lib.startswith("/"):
            files[f"{prefix}{lib.lstrip('/')}"] = Path(os.path.realpath(lib))
    return files


def load_into_nodes(host: str, tags: list[str], nodes: list[str]) -> None:
    """docker save | ctr import into every node (what `kind load docker-image` does)."""
    env = docker_env(host)
    for node in nodes:
        save = subprocess.Popen(["docker", "save", *tags], env=env, stdout=subprocess.PIPE)
        r = subprocess.run(["docker", "exec", "-i", node, "ctr", "--namespace=k8s.io", "images",
                            "import", "--all-platforms", "--digests", "-"], env=env,
                           stdin=save.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
        save.stdout.close()
        if save.wait() != 0 or r.returncode != 0:
            die(f"loading {', '.join(tags)} into {node} failed: {r.stderr.strip()}")
