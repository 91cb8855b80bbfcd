"""Removing the stack with site.yml (every core role's state absent) over a deployed stack.

site.yml runs the storage role before the model runner's, so the claim is deleted while the
runner's pod still mounts it: the role must not wait for a deletion that only the next role
allows, and must refuse to delete a claim that a pod the run leaves behind still mounts.

SIMULATION: KWOK plays the model runner's pod (scheduled, Running); the real controller-manager's
pvc-protection controller holds the claim while that pod exists and releases it once it is gone.
"""

import time

from ai_stack_testlib import cluster_env, run_playbook

NO_DOCKER = ("-e", "chatbot_image_load_enabled=false")
ABSENT = ("-e", "storage_state=absent", "-e", "config_state=absent", "-e", "model_runner_state=absent",
          "-e", "chatbot_state=absent", "-e", "autoscaling_state=absent")


def claim(kube, ns):
    found = kube.resources.get(api_version="v1", kind="PersistentVolumeClaim").get(namespace=ns).items
    return found[0] if found else None


def test_site_with_the_core_states_absent_removes_the_claim_after_its_pod(kube, temp_namespace, api_key):
    ns = temp_namespace
    base = ("site.yml", *NO_DOCKER, "-e", f"ai_stack_namespace={ns}")
    deploy = run_playbook(*base, api_key=api_key, extra_env=cluster_env(), timeout=900)
    assert deploy.rc == 0, deploy.describe()
    assert claim(kube, ns) is not None

    # The claim alone, while the model runner (not part of this run) still mounts it: refused, nothing deleted.
    alone = run_playbook(*base, "--tags", "storage", "-e", "storage_state=absent",
                         api_key=api_key, extra_env=cluster_env(), timeout=300)
    assert alone.rc != 0, alone.describe()
    assert alone.failure().name == "pvc | Stop when a pod this run leaves running mounts the claim", alone.describe()
    message = alone.failure_message()
    assert "model_runner_state=absent" in message and "docker-model-runner-" in message, message
    assert "\n" not in message.strip(), message
    assert alone.stats["localhost"]["changed"] == 0, alone.describe()
    kept = claim(kube, ns)
    assert kept is not None and kept.metadata.deletionTimestamp is None

    # The whole core stack: the claim is deleted without waiting, and goes once the runner's pod is gone.
    # (Waiting on the claim here failed this run: "Timed out waiting on resource" after 120 s.)
    remove = run_playbook(*base, *ABSENT, api_key=api_key, extra_env=cluster_env(), timeout=600)
    assert remove.rc == 0, remove.describe()
    said = [r.msg for r in remove.task_results("pvc | Say that the claim goes once the model runner's pods have stopped")]
    assert said and "Terminating" in said[0], remove.describe()
    deployments = kube.resources.get(api_version="apps/v1", kind="Deployment").get(namespace=ns).items
    assert deployments == [], [d.metadata.name for d in deployments]
    deadline = time.monotonic() + 120
    while claim(kube, ns) is not None and time.monotonic() < deadline:
        time.sleep(2)
    assert claim(kube, ns) is None, "the claim is still there two minutes after its pod's Deployment was deleted"

    again = run_playbook(*base, *ABSENT, api_key=api_key, extra_env=cluster_env(), timeout=600)
    assert again.rc == 0 and again.stats["localhost"]["changed"] == 0, again.describe()
