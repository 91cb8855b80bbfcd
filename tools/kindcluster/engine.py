"""The Docker engine kind runs on: a reachable one is reused; otherwise we run our own dockerd.

Our dockerd keeps its images under the build cache (so a second `up` is warm) and its socket,
exec root and pid file under /run/ai-stack-docker, never the system's /var/lib/docker or
/var/run/docker.sock. Containers go under the cgroup parent `ai-stack-docker`. `stop` stops it
and removes what a dockerd leaves behind (mounts, bridges, iptables chains, cgroups); `leftovers`
lists anything still there, so `down` can prove the machine is clean.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from .common import KIND_CACHE, die, is_root, log, run

RUN = Path(os.environ.get("AI_STACK_DOCKER_RUN", "/run/ai-stack-docker"))
SOCKET = RUN / "docker.sock"
HOST = f"unix://{SOCKET}"
PIDFILE = RUN / "dockerd.pid"
DATA_ROOT = KIND_CACHE / "docker"
LOG = KIND_CACHE / "dockerd.log"
# The iptables rules before our dockerd started: `leftovers` reports any rule added since.
IPTABLES_BEFORE = KIND_CACHE / "iptables-before.json"
CGROUP_PARENT = "ai-stack-docker"
RUNTIME_NAME = "ai-stack-runc"
WRAPPER = Path(__file__).resolve().parent / "runc_wrapper.py"
SYSTEM_SOCKET = "unix:///var/run/docker.sock"
CAP_SYS_RESOURCE = 24
PACKAGES = {"dockerd": "docker.io", "docker": "docker.io", "iptables": "iptables",
            "debootstrap": "debootstrap", "busybox": "busybox-static", "runc": "runc"}


def require(*commands: str) -> None:
    """Make sure the commands exist; install their Debian packages when we can (root + apt)."""
    missing = [c for c in commands if not shutil.which(c)
               and not Path(f"/usr/sbin/{c}").exists() and not Path(f"/sbin/{c}").exists()]
    if not missing:
        return
    pkgs = sorted({PACKAGES.get(c, c) for c in missing})
    if is_root() and shutil.which("apt-get"):
        log(f"installing Debian packages for {', '.join(missing)}: {' '.join(pkgs)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
        if run(cmd, env=env, check=False, capture=True).returncode != 0:
            run(["apt-get", "update"], env=env, capture=True)
            run(cmd, env=env, capture=True)
        return
    die(f"missing {', '.join(missing)}: install {' '.join(pkgs)} "
        f"(Debian/Ubuntu: sudo apt-get install {' '.join(pkgs)}), or start Docker and set DOCKER_HOST")


def reachable(host: str) -> bool:
    try:
        r = subprocess.run(["docker", "-H", host, "version", "--format", "{{.Server.Version}}"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and bool(r.stdout.strip())


def ours_running() -> bool:
    return SOCKET.exists() and reachable(HOST)


def find() -> tuple[str | None, bool]:
    """(DOCKER_HOST to use, whether it is our own dockerd); (None, False) when none is reachable."""
    env_host = os.environ.get("DOCKER_HOST", "")
    if env_host and env_host != HOST:
        if reachable(env_host):
            return env_host, False
        die(f"DOCKER_HOST={env_host} is set but no Docker engine answers there; "
            "start it, or unset DOCKER_HOST to let kindcluster run its own")
    if shutil.which("docker") and ours_running():
        return HOST, True
    if shutil.which("docker") and reachable(SYSTEM_SOCKET):
        return SYSTEM_SOCKET, False
    return None, False


def cap_missing(cap: int = CAP_SYS_RESOURCE) -> bool:
    m = re.search(r"^CapBnd:\s*([0-9a-f]+)$", Path("/proc/self/status").read_text(), re.M)
    return bool(m) and not (int(m.group(1), 16) >> cap) & 1


def start() -> str:
    """Start our dockerd (data under the cache, socket under /run/ai-stack-docker)."""
    require("dockerd", "docker", "iptables")
    if not is_root():
        die("no Docker engine is reachable and starting one needs root: start Docker "
            "(or Docker Desktop) and run again, or run as root")
    RUN.mkdir(parents=True, exist_ok=True)
    DATA_ROOT.mkdir(parents=True, exist_ok=True)
    cmd = ["dockerd", "--data-root", str(DATA_ROOT), "--exec-root", str(RUN / "exec"),
           "-H", HOST, "--pidfile", str(PIDFILE), "--cgroup-parent", CGROUP_PARENT,
           "--bridge=none", "--log-level=warn"]
    if cap_missing():
        real = shutil.which("runc") or "/usr/sbin/runc"
        log("this machine lacks CAP_SYS_RESOURCE in its bounding set: privileged containers "
            f"run through {WRAPPER.name}, which drops it from their spec")
        cmd += ["--add-runtime", f"{RUNTIME_NAME}={WRAPPER}", "--default-runtime", RUNTIME_NAME]
        os.environ["AI_STACK_REAL_RUNC"] = real
    log(f"no Docker engine reachable; starting our own dockerd ({HOST}, data {DATA_ROOT})")
    IPTABLES_BEFORE.write_text(json.dumps(_iptables_rules()))
    with open(LOG, "ab") as logf:
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True, close_fds=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if p.poll() is not None:
            die(f"dockerd exited ({p.returncode}); see {LOG}")
        if reachable(HOST):
            return HOST
        time.sleep(0.5)
    die(f"dockerd did not answer within 60 s; see {LOG}")


def ensure() -> tuple[str, bool]:
    host, ours = find()
    if host:
        return host, ours
    return start(), True


def _pid() -> int | None:
    try:
        return int(PIDFILE.read_text().strip())
    except (OSError, ValueError):
        return None


def _our_pids() -> list[int]:
    """dockerd, its containerd and shims: processes whose command line names our paths."""
    marks = (str(RUN), str(DATA_ROOT))
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(m in cmd for m in marks):
            pids.append(int(d.name))
    return pids


def stop() -> None:
    """Stop our dockerd and clean up after it. Containers must be gone already."""
    pid = _pid()
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 40
    while _our_pids() and time.monotonic() < deadline:
        time.sleep(0.3)
    for p in _our_pids():
        log(f"process {p} still running after dockerd stopped; killing it")
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    time.sleep(0.5)
    _unmount()
    _remove_iptables()
    _remove_cgroups()
    shutil.rmtree(RUN, ignore_errors=True)


def _mounts() -> list[str]:
    marks = (str(RUN), str(DATA_ROOT))
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mnt = line.split()[4].replace("\\040", " ")
        if mnt.startswith(marks):
            out.append(mnt)
    return out


def _unmount() -> None:
    for mnt in sorted(_mounts(), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def _iptables_rules() -> dict[str, list[str]]:
    rules = {}
    for table in ("filter", "nat"):
        r = subprocess.run(["iptables", "-t", table, "-S"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        rules[table] = r.stdout.splitlines()
    return rules


def _iptables_lines() -> dict[str, list[str]]:
    """Docker's chains and the jumps to them."""
    return {t: [ln for ln in lines if "DOCKER" in ln] for t, lines in _iptables_rules().items()}


def _iptables_added() -> dict[str, list[str]]:
    """Rules added since our dockerd started (empty without a snapshot)."""
    try:
        before = json.loads(IPTABLES_BEFORE.read_text())
    except (OSError, ValueError):
        return {}
    return {t: [ln for ln in lines if ln not in before.get(t, [])]
            for t, lines in _iptables_rules().items()}


def _remove_iptables() -> None:
    """Delete the DOCKER* chains and the jumps to them that dockerd leaves when it stops, and
    restore the chain policies it changed (dockerd sets FORWARD to DROP)."""
    if not shutil.which("iptables"):
        return
    try:
        before = json.loads(IPTABLES_BEFORE.read_text())
    except (OSError, ValueError):
        before = {}
    for table, lines in before.items():
        for ln in lines:
            if ln.startswith("-P ") and ln not in _iptables_rules().get(table, []):
                subprocess.run(["iptables", "-t", table, *ln.split()], stderr=subprocess.DEVNULL)
    for table, lines in _iptables_lines().items():
        for ln in lines:
            if ln.startswith("-A "):
                subprocess.run(["iptables", "-t", table, "-D", *ln.split()[1:]],
                               stderr=subprocess.DEVNULL)
        for ln in lines:
            if ln.startswith("-N "):
                chain = ln.split()[1]
                subprocess.run(["iptables", "-t", table, "-F", chain], stderr=subprocess.DEVNULL)
        for ln in lines:
            if ln.startswith("-N "):
                subprocess.run(["iptables", "-t", table, "-X", ln.split()[1]],
                               stderr=subprocess.DEVNULL)


def _cgroup_dirs() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    dirs = [root / CGROUP_PARENT] if (root / CGROUP_PARENT).is_dir() else []
    if root.is_dir():
        for ctrl in root.iterdir():
            if (ctrl / CGROUP_PARENT).is_dir():
                dirs.append(ctrl / CGROUP_PARENT)
    return dirs


def _remove_cgroups() -> None:
    for top in _cgroup_dirs():
        for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                        reverse=True):
            try:
                d.rmdir()
            except OSError:
                pass
        try:
            top.rmdir()
        except OSError:
            pass


def leftovers() -> list[str]:
    """What our dockerd left on the machine (empty when clean)."""
    found = [f"process {p}" for p in _our_pids()]
    found += [f"mount {m}" for m in _mounts()]
    rules = {t: set(a) | set(b) for t, a, b in
             ((t, _iptables_lines()[t], _iptables_added().get(t, [])) for t in ("filter", "nat"))}
    found += [f"iptables -t {t}: {ln}" for t, lines in rules.items() for ln in sorted(lines)]
    found += [f"cgroup {d}" for d in _cgroup_dirs()]
    r = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    found += [f"bridge {ln.split(':')[1].strip()}" for ln in r.stdout.splitlines()
              if re.search(r": (docker0|br-[0-9a-f]{12})[:@]", ln)]
    if RUN.exists():
        found.append(f"directory {RUN}")
    return found
