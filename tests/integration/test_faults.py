"""Faults: the API server goes away in the middle of a run; a run is interrupted.

SIMULATION: the simulated cluster's control plane (kwokctl) is stopped once the run has created
the stack's claim, and started again after the run has ended; KWOK plays the pods. The run must
end with one line that names the API server (not a urllib3 exception blamed on some object),
and a re-run must converge, with a third run changing nothing.
"""

import os
import signal
import subprocess
import sys
import time

from ai_stack_testlib import (BIN, ROOT, PlaybookResult, ansible_env, cluster_env, kill_when,
                              parse_report, run_playbook, start_playbook)

NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")


def control_plane(cmd: str) -> None:
    subprocess.run([sys.executable, "-m", "testcluster", cmd], cwd=ROOT, check=True, timeout=120,
                   # HOME: without it kubectl keeps its cache in ./.kube, in the project.
                   env={"PATH": str(BIN) + ":/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tools"),
                        "HOME": os.environ.get("HOME", "/root")})


def test_api_server_stopped_mid_run_says_so_and_a_rerun_converges(kube, temp_namespace, api_key):
    ns = temp_namespace
    env = cluster_env()
    args = ["site.yml", "-e", f"cluster_expected_context={env['K8S_AUTH_CONTEXT']}", *NO_DOCKER,
            "-e", f"ai_stack_namespace={ns}"]
    proc = subprocess.Popen([str(BIN / "ansible-playbook"), *args], cwd=ROOT, env=ansible_env(api_key, env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    claims = kube.resources.get(api_version="v1", kind="PersistentVolumeClaim")
    stopped = False
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if claims.get(namespace=ns).items:
                control_plane("stop")
                stopped = True
                break
            time.sleep(0.2)
        assert stopped, "the run never created the claim"
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        if stopped:
            control_plane("start")
    run = PlaybookResult(args, proc.returncode, stdout, stderr, parse_report(stdout))
    assert run.rc != 0, run.describe()
    message = run.failure_message()
    assert message.startswith("The Kubernetes API server https://127.0.0.1:"), run.describe()
    assert "stopped answering" in message and "run again" in message and "\n" not in message.strip(), message
    # The client's exception is printed once, by the failed task the rescue takes over; the run's
    # failure, the last thing it says, is the line above.
    assert "Value of unknown type" not in message and "urllib3" not in message
    assert api_key not in run.output

    again = run_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}",
                         api_key=api_key, extra_env=env, timeout=600)
    assert again.rc == 0, again.describe()
    third = run_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}",
                         api_key=api_key, extra_env=env, timeout=600)
    assert third.rc == 0 and not third.changed, third.describe()


def start_site(ns: str, api_key: str) -> subprocess.Popen:
    return start_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}", api_key=api_key,
                          extra_env=cluster_env())


def test_deploy_interrupted_at_several_points_then_converges(kube, temp_namespace, api_key):
    """SIGINT once the namespace exists, SIGKILL once the claim exists, SIGKILL while the model
    runner's Deployment is being waited for; then a run converges, the next changes nothing, and
    the claim is the one the first run made (same uid and volume). SIMULATION: KWOK plays the pods,
    so the volume holds no file to compare; on kind the claim's identity is what keeps the data."""
    ns = temp_namespace
    namespaces = kube.resources.get(api_version="v1", kind="Namespace")
    claims = kube.resources.get(api_version="v1", kind="PersistentVolumeClaim")
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment")

    kill_when(start_site(ns, api_key), lambda: ns in [n.metadata.name for n in namespaces.get().items],
              signal.SIGINT, "the namespace", ns)
    kill_when(start_site(ns, api_key), lambda: bool(claims.get(namespace=ns).items), signal.SIGKILL, "the claim", ns)
    first_claim = claims.get(namespace=ns).items[0]
    kill_when(start_site(ns, api_key), lambda: bool(deployments.get(namespace=ns).items), signal.SIGKILL,
              "a Deployment", ns)

    env = cluster_env()
    again = run_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}", api_key=api_key,
                         extra_env=env, timeout=600)
    assert again.rc == 0, again.describe()
    third = run_playbook("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}", api_key=api_key,
                         extra_env=env, timeout=600)
    assert third.rc == 0 and not third.changed, third.describe()
    claim = claims.get(namespace=ns, name=first_claim.metadata.name)
    assert claim.metadata.uid == first_claim.metadata.uid
    assert claim.status.phase == "Bound"
    assert claim.spec.volumeName == (first_claim.spec.volumeName or claim.spec.volumeName)

    # Cleanup interrupted once the namespace is being deleted, then run again: nothing is left,
    # and another cleanup changes nothing.
    cleanup = start_playbook("playbooks/cleanup.yml", "-e", f"ai_stack_namespace={ns}", api_key=api_key, extra_env=env)
    kill_when(cleanup, lambda: any(n.metadata.name == ns and n.metadata.deletionTimestamp
                                   for n in namespaces.get().items), signal.SIGKILL, "the namespace's deletion", ns)
    for attempt in ("again", "once more"):
        done = run_playbook("playbooks/cleanup.yml", "-e", f"ai_stack_namespace={ns}", api_key=api_key,
                            extra_env=env, timeout=600)
        assert done.rc == 0, f"cleanup {attempt}: {done.describe()}"
        assert ns not in [n.metadata.name for n in namespaces.get().items]
    assert not done.changed, done.describe()
