"""Offline stand-in for kubernetes.core.k8s_info, used only by tests/render.yml.

tests/render.yml runs a role's own task files (include_role tasks_from) where a
template needs what the role reads from the cluster. For that run,
tests/render_collections (a kubernetes.core with only a meta/runtime.yml) routes
``kubernetes.core.k8s_info`` here. The read is answered the way the API server
would answer it after the run applied the manifests:

* if the play has ``render_checksum_data`` with an entry for the kind asked for
  (``{"ConfigMap": {...}, "Secret": {...}}``), a read of one named object gets one
  object of that kind whose ``data`` is that entry (``null``: no such object);
* otherwise the objects that match (kind, name if given, namespace if given) among
  the manifests rendered so far (the play's ``render_outputs``) and the objects the
  play says are in the cluster already (``render_cluster_objects``, a list).

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

        overrides = self._var(task_vars, "render_checksum_data", {}) or {}
        if name and kind in overrides:
            data = overrides[kind]
            resources = []
            if data is not None:
                resources = [
                    {
                        "apiVersion": args.get("api_version", "v1"),
                        "kind": kind,
                        "metadata": {"name": name, "namespace": namespace},
                        "data": data,
                    }
                ]
            answered_from = "render_checksum_data"
        else:
            candidates = list(self._var(task_vars, "render_cluster_objects", []) or [])
            outputs = self._var(task_vars, "render_outputs", {}) or {}
            for key in sorted(outputs):
                candidates.extend(yaml.safe_load_all(str(outputs[key])))
            resources = []
            for obj in candidates:
                if not isinstance(obj, dict):
                    continue
                meta = obj.get("metadata") or {}
                if (
                    obj.get("kind") == kind
                    and (not name or meta.get("name") == name)
                    and (not namespace or meta.get("namespace") == namespace)
                ):
                    resources.append(obj)
            answered_from = "manifests"
        result.update(changed=False, api_found=True, resources=resources, render_answered_from=answered_from)
        return result
