"""llama-server, built from the llama.cpp sources that PyPI's llama-cpp-python sdist vendors.

Docker Model Runner runs llama.cpp's `llama-server` from the directory LLAMA_SERVER_PATH names
(the published image copies it from the upstream llama.cpp server image, which cannot be pulled
here). PyPI's `llama-cpp-python` source distribution (pinned as `llama_cpp_python` in
versions.json) carries llama.cpp under vendor/llama.cpp, tools/server included, so the binary is
built from that: `pip download` the sdist (the only download), unpack it, configure with CMAKE_FLAGS
(CPU only, portable, static ggml) and build the one target. About 5 min on 2 idle cores the first
time (53 min measured with the 2 cores shared with a kind cluster and other builds, load 6-13;
`pip download` alone takes about 5 min, building the sdist's metadata); afterwards the binary in
the cache is used as it is.

Layout under KIND_CACHE/llama-server: sdist/ (the download), src-<version>/, build-<version>/,
bin-<version>/llama-server.
"""
from __future__ import annotations

import shutil
import sys
import tarfile
from pathlib import Path

from .common import KIND_CACHE, Timer, die, log, run, versions

PACKAGE = "llama-cpp-python"
# Where everything of this module lives: the downloaded sdist, its sources, the build, the binary.
CACHE_DIR = KIND_CACHE / "llama-server"
SDIST_DIR = CACHE_DIR / "sdist"
# CPU only and portable (no -march=native: the image may run on another machine), no libcurl (the
# runner hands it local files), static ggml so the binary needs only system libraries.
CMAKE_FLAGS = [
    "-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DBUILD_SHARED_LIBS=OFF",
    "-DCMAKE_BUILD_TYPE=Release",
]
TARGET = "llama-server"


def version() -> str:
    return versions()["llama_cpp_python"]


def binary() -> Path:
    return CACHE_DIR / f"bin-{version()}" / TARGET


def sdist() -> Path:
    """The sdist, downloaded with pip once (PyPI's file name normalises the project name)."""
    name = f"{PACKAGE.replace('-', '_')}-{version()}.tar.gz"
    path = SDIST_DIR / name
    if not path.exists():
        SDIST_DIR.mkdir(parents=True, exist_ok=True)
        with Timer(f"pip download {PACKAGE}=={version()} (sdist)"):
            run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--no-binary", ":all:", "-d", SDIST_DIR, f"{PACKAGE}=={version()}"])
        if not path.exists():
            die(f"pip download did not leave {path}")
    return path


def sources() -> Path:
    src = CACHE_DIR / f"src-{version()}"
    llama = src / "vendor" / "llama.cpp"
    if not (llama / "tools" / "server").is_dir():
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        with tarfile.open(sdist()) as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts[1:]  # strip llama_cpp_python-<version>/
                if parts:
                    m.name = str(Path(*parts))
                    tar.extract(m, src, filter="data")
        if not (llama / "tools" / "server").is_dir():
            die(f"{PACKAGE} {version()}: no vendor/llama.cpp/tools/server in the sdist")
    return llama


def build() -> Path:
    """Build llama-server unless it is in the cache; return its path."""
    out = binary()
    if out.exists():
        log(f"llama-server: cached ({out})")
        return out
    llama = sources()
    bdir = CACHE_DIR / f"build-{version()}"
    log(f"llama-server: building from {PACKAGE} {version()} (about 5 min on 2 cores) ...")
    with Timer("llama-server build"):
        run(["cmake", "-S", llama, "-B", bdir, *CMAKE_FLAGS], capture=True)
        run(["cmake", "--build", bdir, "--target", TARGET, "-j2"], capture=True)
    built = bdir / "bin" / TARGET
    if not built.exists():
        die(f"cmake built no {built}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(TARGET + ".tmp")
    shutil.copy2(built, tmp)
    tmp.rename(out)
    log(f"llama-server: {out} ({out.stat().st_size >> 20} MiB)")
    return out
