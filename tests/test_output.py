"""The project's stdout callback (plugins/callback/ai_stack.py, ansible.cfg's stdout_callback): what a
person sees of a run. No cluster: a local playbook with the kinds of tasks the roles have."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ai_stack_testlib import ROOT

sys.path.insert(0, str(ROOT / "plugins" / "callback"))
from ai_stack import worth_showing  # noqa: E402

PLAYBOOK = """
- name: A play with each kind of task the roles have
  hosts: all
  gather_facts: false
  tasks:
    - name: Plain ok
      ansible.builtin.set_fact:
        x: 1
    - name: Quiet assert
      ansible.builtin.assert:
        that: true
        quiet: true
    - name: Assert with a message
      ansible.builtin.assert:
        that: true
        success_msg: checked the thing
    - name: Include
      ansible.builtin.include_tasks: inc.yml
    - name: Quiet loop
      ansible.builtin.set_fact:
        y: "{{ item }}"
      loop: [1, 2]
    - name: Changed
      ansible.builtin.command: "true"
    - name: Fails
      ansible.builtin.fail:
        msg: the failure's message
      ignore_errors: true  # noqa: ignore-errors
    - name: A block with a rescue
      block:
        - name: Fails and is rescued
          ansible.builtin.fail:
            msg: "first line of the rescued failure\\nsecond line of it"
      rescue:
        - name: The rescue
          ansible.builtin.debug:
            msg: rescued cleanly
    - name: A loop in a block with a rescue
      block:
        - name: Fails in a loop and is rescued
          ansible.builtin.fail:
            msg: "{{ 'looped failure ' ~ item ~ ' ' ~ 'x' * 400 }}"
          loop: [one]
      rescue:
        - name: The second rescue
          ansible.builtin.debug:
            msg: rescued again
    - name: Skipped
      ansible.builtin.debug:
        msg: never
      when: false
    - name: Long wait, at most 5 s
      ansible.builtin.pause:
        seconds: 2

- name: A play that matches no host
  hosts: nobody_here
  gather_facts: false
  tasks:
    - name: Never
      ansible.builtin.debug:
        msg: never

- name: Summary
  hosts: all
  gather_facts: false
  tasks:
    - name: Summary line
      ansible.builtin.debug:
        msg: the summary
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("output")
    (work / "play.yml").write_text(PLAYBOOK)
    (work / "inc.yml").write_text("- name: Included debug\n  ansible.builtin.debug:\n    msg: from the include\n")

    def play(*args: str, announce: str = "0.5") -> str:
        env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), AI_STACK_ANNOUNCE_AFTER=announce,
                   ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
        env.pop("ANSIBLE_STDOUT_CALLBACK", None)
        done = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,",
                               "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}", "play.yml", *args], cwd=work, env=env, capture_output=True, text=True,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
    return play


def test_only_lines_a_person_reads(run):
    out = run()
    for shown in ("checked the thing", "from the include", "changed: [localhost]", "TASK [Changed]",
                  "the summary", "PLAY [Summary]", "PLAY RECAP",
                  "TASK [Fails]", "the failure's message", "...ignoring"):
        assert shown in out, out
    for hidden in ("TASK [Plain ok]", "TASK [Quiet assert]", "TASK [Quiet loop]", "included:", "TASK [Skipped]",
                   "never", "A play that matches no host", "no hosts matched"):
        assert hidden not in out, out
    # An assert's message is shown alone, like a debug's.
    asserted = out[out.index("TASK [Assert with a message]"):out.index("TASK [Included debug]")]
    assert "checked the thing" in asserted and "changed" not in asserted, out
    # The recap stays, after the summary.
    assert out.index("the summary") < out.index("PLAY RECAP")


def test_a_rescued_failure_is_one_line(run):
    out = run()
    assert "TASK [Fails and is rescued]" in out, out
    assert "failed: [localhost] (rescued below): first line of the rescued failure\n" in out, out
    section = out[out.index("TASK [Fails and is rescued]"):out.index("TASK [The second rescue]")]
    assert "second line of it" not in section and "FAILED!" not in section, out
    assert "rescued cleanly" in out and "rescued again" in out, out
    looped = [line for line in out.splitlines() if "looped failure one" in line]
    assert len(looped) == 1 and looped[0].startswith("failed: [localhost] (item=one) (rescued below): "), out
    assert looped[0].endswith("x ...") and len(looped[0]) < 400, looped
    # -v prints the whole failure, as Ansible's default does.
    verbose = run("-v")
    assert "second line of it" in verbose and "FAILED!" in verbose, verbose


def test_a_long_task_is_announced_while_it_runs(run):
    out = run()
    assert "TASK [Long wait, at most 5 s]" in out, out
    # Off: the pause's ok result is hidden like any other.
    assert "TASK [Long wait, at most 5 s]" not in run(announce="0")


def test_verbose_shows_everything(run):
    out = run("-v")
    for shown in ("TASK [Plain ok]", "TASK [Quiet loop]", "included:", "no hosts matched"):
        assert shown in out, out


@pytest.mark.parametrize(("action", "result", "shown"), [
    ("ansible.builtin.debug", {"msg": "x"}, True),
    ("ansible.builtin.assert", {"msg": "All assertions passed"}, False),
    ("ansible.builtin.assert", {"msg": "Context: kind-desktop"}, True),
    ("ansible.builtin.assert", {}, False),
    ("kubernetes.core.k8s", {"changed": False}, False),
    ("kubernetes.core.k8s", {"changed": True}, True),
    ("kubernetes.core.k8s", {"changed": False, "warnings": ["w"]}, True),
])
def test_worth_showing(action, result, shown):
    assert worth_showing(action, result) is shown
