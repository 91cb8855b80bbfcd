"""The processes the tool starts and stops itself: the hostpath provisioner, and kwokctl's
daemons when `kwokctl delete cluster` leaves any behind. A process is stopped only when its
command line shows that it is ours."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .common import KUBECONFIG, PROV_LOG, PROV_PID, PROVISIONER_NAME, RUN_DIR, die, log


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie counts as gone
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def read_pid_dir(directory: Path) -> dict[str, int]:
    """The pids in `directory`/*.pid by file stem (kwokctl's pids/ folder); {} if none."""
    pids = {}
    if directory.is_dir():
        for f in directory.glob("*.pid"):
            p = read_pid(f)
            if p:
                pids[f.stem] = p
    return pids


def stop_pid(pid: int, must_contain: tuple[str, ...], label: str) -> None:
    """SIGTERM then SIGKILL one process we started (checked by its command line)."""
    if not pid_alive(pid):
        return
    cmd = pid_cmdline(pid)
    if not any(m in cmd for m in must_contain):
        log(f"not stopping pid {pid} ({label}): command line {cmd[:80]!r} is not ours")
        return
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    log(f"{label} (pid {pid}) ignored SIGTERM; sending SIGKILL")
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_exited(pids, seconds: float) -> None:
    """Wait up to `seconds` for the processes to exit (a zombie counts as exited)."""
    deadline = time.monotonic() + seconds
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


def wait_reaped(pids, seconds: float) -> list[int]:
    """Wait up to `seconds` for the processes to be gone from /proc; those that are not."""
    deadline = time.monotonic() + seconds
    while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in pids if Path(f"/proc/{p}").exists()]


def start_provisioner(binary: Path) -> None:
    """Start the hostpath provisioner in the background, unless it already runs."""
    pid = read_pid(PROV_PID)
    if pid and pid_alive(pid) and str(binary) in pid_cmdline(pid):
        return
    pv_dir = RUN_DIR / "pv"
    pv_dir.mkdir(parents=True, exist_ok=True)
    logf = open(PROV_LOG, "ab")
    p = subprocess.Popen(
        [str(binary), f"--kubeconfig={KUBECONFIG}", f"--provisioner-name={PROVISIONER_NAME}",
         f"--base-dir={pv_dir}", "-v=2"],
        stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True)
    logf.close()
    PROV_PID.write_text(f"{p.pid}\n")
    time.sleep(0.5)
    if p.poll() is not None:
        die(f"provisioner exited at once ({p.returncode}); see {PROV_LOG}")
