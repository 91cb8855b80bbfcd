"""Offline stand-in for kubernetes.core.k8s_info, used only by tests/render.yml.

tests/render.yml runs a role's own task files (include_role tasks_from) where a
template needs what the role reads from the cluster. For that run,
tests/render_collections (a kubernetes.core with only a meta/runtime.yml) routes
``kubernetes.core.k8s_info`` here. The read is answered the way the API server
would answer it after the run applied the manifests:

* the objects that match (kind, name if given, namespace if given) among the objects
  the play says are in the cluster already (``render_cluster_objects``, a list, with
  the resourceVersion the API server would add);
* if none does, those among the manifests rendered so far (the play's ``render_outputs``).

The result says which of the two answered (``render_answered_from``).
"""

import yaml
from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    """Return ``resources`` like kubernetes.core.k8s_info, from rendered manifests."""

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("api_version", "kind", "namespace", "name", "label_selectors", "field_selectors"))

    def _var(self, task_vars, name, default=None):
        if name not in task_vars:
            return default
        return self._templar.template(task_vars[name])

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        kind = args.get("kind")
        name = args.get("name")
        namespace = args.get("namespace")
        if not kind:
            raise AnsibleActionFail("render_k8s_info answers reads of one kind only (give kind)")
        if args.get("label_selectors") or args.get("field_selectors"):
            raise AnsibleActionFail("render_k8s_info does not answer label or field selectors")

        def matching(objects):
            found = []
            for obj in objects:
                meta = (obj.get("metadata") or {}) if isinstance(obj, dict) else {}
                if (
                    isinstance(obj, dict)
                    and obj.get("kind") == kind
                    and (not name or meta.get("name") == name)
                    and (not namespace or meta.get("namespace") == namespace)
                ):
                    found.append(obj)
            return found

        # What the play says is in the cluster wins; else what the run rendered so far.
        resources = matching(self._var(task_vars, "render_cluster_objects", []) or [])
        answered_from = "render_cluster_objects"
        if not resources:
            outputs = self._var(task_vars, "render_outputs", {}) or {}
            rendered = [doc for key in sorted(outputs) for doc in yaml.safe_load_all(str(outputs[key]))]
            resources = matching(rendered)
            answered_from = "manifests"
        result.update(changed=False, api_found=True, resources=resources, render_answered_from=answered_from)
        return result
