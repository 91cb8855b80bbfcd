"""The preload callback (plugins/callback/ai_stack_preload.py): the plugins the roles use are loaded
once, in Ansible's main process, so the worker each task runs in inherits them. No cluster: a local
playbook whose task reports, from its worker, what was already imported."""

import re
import sys

import pytest
from ai_stack_testlib import ROLES_DIR, ROOT, new_api_key, run_playbook

sys.path.insert(0, str(ROOT / "plugins" / "callback"))
from ai_stack_preload import FILTERS, LOOKUPS  # noqa: E402

# What the roles' Kubernetes reads need: the client, kubernetes.core's lookup, and the apply and wait code
# of kubernetes.core that the project's lookup k8s_unchanged dry-runs with.
PRELOADED = ["ansible_collections.kubernetes.core.plugins.lookup.k8s", "kubernetes",
             "ansible_collections.kubernetes.core.plugins.module_utils.k8s.service",
             "ansible_collections.kubernetes.core.plugins.module_utils.k8s.waiter"]

PROBE = '''
import gc
import sys
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Reports which modules this task's worker had imported before the task ran, and how many of the
    objects it inherited are frozen (left out of its garbage collections)."""

    def run(self, tmp=None, task_vars=None):
        return {"changed": False, "imported": [m for m in %r if m in sys.modules], "frozen": gc.get_freeze_count()}
''' % (PRELOADED,)

PLAYBOOK = """
- name: Probe a worker
  hosts: localhost
  gather_facts: false
  tasks:
    - name: What this worker inherited
      probe: {}
"""


def sources() -> str:
    files = [ROOT / "site.yml", *(ROOT / "playbooks").rglob("*.yml"), *ROLES_DIR.rglob("*.yml"), *ROLES_DIR.rglob("*.j2")]
    return "\n".join(path.read_text() for path in files)


def test_every_lookup_and_named_filter_of_the_roles_is_preloaded():
    text = sources()
    lookups = set(re.findall(r"""\b(?:lookup|query|q)\(\s*['"]([\w.]+)['"]""", text))
    filters = set(re.findall(r"\|\s*(ansible\.builtin\.\w+|[a-z_]+\.[a-z_]+\.\w+)", text))
    assert lookups, "found no lookup: the pattern is wrong"
    assert "kubernetes.core.k8s" in lookups
    assert lookups == set(LOOKUPS), f"ai_stack_preload.py's LOOKUPS should be {sorted(lookups)}"
    assert filters == set(FILTERS), f"ai_stack_preload.py's FILTERS should be {sorted(filters)}"


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    work = tmp_path_factory.mktemp("preload")
    (work / "action_plugins").mkdir()
    (work / "action_plugins" / "probe.py").write_text(PROBE)
    (work / "play.yml").write_text(PLAYBOOK)

    def run(**extra_env: str) -> dict:
        result = run_playbook(str(work / "play.yml"), api_key=new_api_key(), extra_env=extra_env)
        assert result.rc == 0, result.describe()
        (probed,) = result.task_results("What this worker inherited")
        return probed.result
    return run


def test_a_worker_inherits_the_kubernetes_client_frozen(probe):
    probed = probe()
    assert probed["imported"] == PRELOADED
    # The main process's objects, the client's among them (about 90 000 here).
    assert probed["frozen"] > 50_000, probed


def test_switched_off_a_worker_loads_its_own(probe):
    probed = probe(AI_STACK_PRELOAD="false")
    assert probed["imported"] == [] and probed["frozen"] == 0, probed
