"""Loads, once, in Ansible's main process, the plugins that the roles' tasks use.

Ansible runs every task in a worker process that it forks from its main process. A worker starts
with what the main process has loaded and loses what it loads itself when it exits. So each task
that uses a Jinja filter, a lookup or an action plugin that the main process never loaded loads it
again: the filters and tests on the first template (about 0.1 s a task here), and the
`kubernetes.core.k8s` lookup, which imports the Kubernetes client (0.4 to 0.9 s a task). Loaded here,
before the first play's tasks, every worker inherits them.

At the start of each play it also freezes the main process's objects (`gc.freeze()`, after one
collection): a worker's garbage collections then leave the inherited objects alone instead of walking
them all, which writes to every page of them and so makes the kernel copy those pages into the worker.
That took 7 to 12 % off the user CPU time of a no-op run of site.yml here (two trials of three runs
each way, alternating; the wall-clock time moved by less than the noise of a busy machine).

This callback prints nothing and changes no result; `AI_STACK_PRELOAD=false` turns both off (`make
bench` measures a no-op run both ways).

A plugin that cannot be loaded (the Kubernetes client not installed, say) is left to the task that
uses it, which then fails with Ansible's own message.
"""
from __future__ import annotations

DOCUMENTATION = """
    name: ai_stack_preload
    type: aggregate
    short_description: Load the roles' plugins once, before Ansible forks a worker per task
    description:
      - At the start of the playbook, loads into Ansible's main process the Jinja filters and tests,
        the lookups (the Kubernetes client with kubernetes.core's) and the action plugins the roles use,
        so the worker processes Ansible forks per task inherit them instead of each loading them again.
      - At the start of each play, freezes the main process's objects (gc.freeze), so the workers' garbage
        collections do not walk, and copy, what they inherited.
      - Prints nothing and changes no task's result.
    options:
      enabled:
        description: Whether to load the plugins ahead and freeze the main process's objects (false leaves each
          task to load its own).
        type: bool
        default: true
        env:
          - name: AI_STACK_PRELOAD
        ini:
          - section: callback_ai_stack_preload
            key: enabled
"""

import gc
import time

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import action_loader, filter_loader, lookup_loader, test_loader

# The lookups the roles and playbooks call (tests/test_preload.py keeps the two lists in step with them):
# kubernetes.core.k8s imports the Kubernetes client; k8s_unchanged (plugins/lookup) kubernetes.core's apply code.
LOOKUPS = ("k8s_unchanged", "kubernetes.core.k8s", "kubernetes.core.kustomize", "ansible.builtin.env", "ansible.builtin.file",
           "ansible.builtin.template", "ansible.builtin.url", "ansible.builtin.vars", "ansible.builtin.varnames")
# The filters the roles call by their full name (the others load with filter_loader.all()).
FILTERS = ("ansible.builtin.from_yaml", "ansible.builtin.from_yaml_all", "ansible.builtin.expanduser",
           "ansible.builtin.realpath")
# The action plugins of the roles' most frequent tasks; kubernetes.core's serves all its modules.
ACTIONS = ("ansible.builtin.assert", "ansible.builtin.set_fact", "ansible.builtin.debug", "ansible.builtin.fail",
           "ansible.builtin.validate_argument_spec", "kubernetes.core.k8s")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "ai_stack_preload"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_start(self, playbook):
        if not self.get_option("enabled"):
            return
        started = time.monotonic()
        # Every filter and test of ansible.builtin and of the project's plugins/filter.
        for loader in (filter_loader, test_loader):
            list(loader.all())
        missed = [name for loader, names in ((lookup_loader, LOOKUPS), (filter_loader, FILTERS), (action_loader, ACTIONS))
                  for name in names if not self._load(loader, name)]
        self._display.vvv(f"ai_stack_preload: loaded the roles' plugins in {time.monotonic() - started:.2f} s"
                          + (f"; not loaded: {', '.join(missed)}" if missed else ""))

    def v2_playbook_on_play_start(self, play):
        if not self.get_option("enabled"):
            return
        # After the playbook's parsing and the preload above: what the workers forked from now on inherit.
        gc.collect()
        gc.freeze()

    @staticmethod
    def _load(loader, name: str) -> bool:
        try:
            return loader.get(name, class_only=True) is not None
        except Exception:  # pylint: disable=broad-except  # the task that uses it reports it
            return False
