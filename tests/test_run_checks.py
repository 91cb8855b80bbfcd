"""site.yml stops on a tag it does not have, and on an inventory without a k8s_controller host,
before any task talks to a cluster (no cluster needed: nothing gets that far)."""

import json

from ai_stack_testlib import ROOT, k8s_lookup_tasks, kubernetes_calls, load_yaml, new_api_key, run_playbook


def test_an_unknown_tag_stops_the_run():
    result = run_playbook("site.yml", "--tags", "chatbots", api_key=new_api_key())
    assert result.rc != 0, result.describe()
    assert [r.name for r in result.failed_tasks()] == ["Run | Stop on a tag this project does not have"], result.describe()
    assert "Unknown tag(s) chatbots" in result.failure_message()
    assert "chatbot," in result.failure_message()  # the list of real tags
    assert not kubernetes_calls(result), result.describe()


def test_known_tags_pass_the_check(tmp_path):
    # No cluster: the run fails later, in the stack's play; the checks themselves pass.
    result = run_playbook("site.yml", "--tags", "cluster,chatbot", "--skip-tags", "loadtest",
                          "-e", f"ai_stack_kubeconfig={tmp_path / 'none'}", api_key=new_api_key())
    checks = [r for r in result.results() if r.name.startswith("Run | ")]
    assert len(checks) == 2 and not [r for r in checks if r.failed], result.describe()


def test_an_inventory_without_the_controller_group_stops_the_run(tmp_path):
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    result = run_playbook("site.yml", "-i", str(inventory), api_key=new_api_key())
    assert result.rc != 0, result.describe()
    assert [r.name for r in result.failed_tasks()] == ["Run | Stop when the inventory has no k8s_controller host"], result.describe()
    assert "k8s_controller" in result.failure_message() and str(inventory) in result.failure_message()


def test_a_missing_inventory_file_stops_the_run(tmp_path):
    result = run_playbook("site.yml", "-i", str(tmp_path / "host.yml"), api_key=new_api_key())
    assert result.rc != 0, result.describe()
    assert "has no host in the group k8s_controller" in result.failure_message().replace("\n", " ")


def test_a_missing_or_malformed_kubeconfig_gets_one_message_that_names_the_file(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nclusters: [unclosed\n")
    # The controller is this machine (the inventory's local connection): a lookup reads the file, no
    # module runs. Forced remote (__ai_stack_controller_here=false): slurp reads it where the modules run.
    for remote in (False, True):
        for path, why in ((bad, "it is not a kubeconfig (not valid YAML)"), (tmp_path / "absent", "the file does not exist")):
            # --tags chatbot: the cluster checks run whatever the tags.
            result = run_playbook("site.yml", "--tags", "chatbot", "-e", f"ai_stack_kubeconfig={path}",
                                  "-e", "chatbot_image_load_enabled=false", "-e", json.dumps({"__ai_stack_controller_here": not remote}),
                                  api_key=new_api_key())
            assert result.rc != 0, result.describe()
            message = result.failure_message()
            assert f"Cannot use the kubeconfig {path}: {why}" in message.replace("\n", " "), result.describe()
            assert "Traceback" not in result.output
            assert not kubernetes_calls(result), result.describe()
            assert result.ran("api | Read the kubeconfig file on the remote controller") == remote, result.describe()


def test_an_unknown_skip_tag_is_harmless(tmp_path):
    """molecule runs every playbook with --skip-tags molecule-notest,notest."""
    result = run_playbook("site.yml", "--skip-tags", "molecule-notest,notest", "--tags", "cluster",
                          "-e", f"ai_stack_kubeconfig={tmp_path / 'none'}", api_key=new_api_key())
    checks = [r for r in result.results() if r.name.startswith("Run | ")]
    assert len(checks) == 2 and not [r for r in checks if r.failed], result.describe()


def test_the_validation_pass_knows_every_role_and_its_tags():
    """site.yml's __site_roles (which the first pre-task validates, by tags) lists the play's roles, in
    order, with the tags site.yml gives them (autoscaling also under loadtest, its post-task's tag)."""
    play = [p for p in load_yaml(ROOT / "site.yml") if p.get("roles")][0]
    listed = {r["role"]: r.get("tags", []) for r in play["roles"]}
    declared = play["vars"]["__site_roles"]
    assert list(declared) == list(listed)
    for role, tags in listed.items():
        extra = {"loadtest"} if role == "autoscaling" else set()  # tuning: its tags are its post-tasks' own
        assert set(declared[role]) == set(tags) | extra, role
    post = [t for t in play["post_tasks"] if "loadtest" in t.get("tags", [])]
    assert post and post[0]["ansible.builtin.include_role"]["name"] == "autoscaling"
    for tag in ("calibrate", "rightsize"):
        (post,) = [t for t in play["post_tasks"] if tag in t.get("tags", [])]
        assert post["tags"] == [tag, "never"] and post["ansible.builtin.include_role"] == {
            "name": "tuning", "tasks_from": tag, "apply": {"tags": [tag]}}


def test_calibrate_and_rightsize_run_only_when_asked():
    """The tuning role (its entry points restart the model runner, or sample for minutes) is validated and run
    only under its own tags: never in a plain run, nor under another tag."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stack_filters", ROOT / "plugins" / "filter" / "stack.py")
    stack = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stack)
    play = [p for p in load_yaml(ROOT / "site.yml") if p.get("roles")][0]
    roles = play["vars"]["__site_roles"]
    assert "tuning" not in stack.roles_for_tags(roles, ["all"], [])
    assert "tuning" not in stack.roles_for_tags(roles, ["loadtest"], [])
    assert stack.roles_for_tags(roles, ["calibrate"], []) == ["cluster", "tuning"]
    assert stack.roles_for_tags(roles, ["rightsize"], []) == ["cluster", "tuning"]
    first = [p for p in load_yaml(ROOT / "site.yml") if not p.get("roles")][0]
    assert {"calibrate", "rightsize"} <= set(first["vars"]["__site_tags"])


def test_the_lookup_reads_are_known():
    """kubernetes_calls counts the tasks that read with a kubernetes.core.k8s lookup, or dry-run with
    k8s_unchanged (in a set_fact, a `when` or a `loop`): the finder sees them."""
    found = k8s_lookup_tasks()
    assert {"chatbot : workloads | Ask the API server which of the Services and Deployments an apply would change",
            "storage : pvc | Apply or delete the claim", "network_policy : NetworkPolicy | Apply or delete the policies",
            "cluster : api | Read the server version, the nodes and the pods in one go (the kubeconfig is on this machine)",
            "autoscaling : metrics_server | Look for the metrics API", "autoscaling : hpa | Apply the HorizontalPodAutoscalers",
            "namespace : namespace | Bind the namespace's admins"} <= found, found
