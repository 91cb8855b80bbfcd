"""Offline stand-in for kubernetes.core.k8s_info, used only by tests/render.yml.

tests/render_tasks/checksum.yml runs a role's own tasks/checksum.yml with its
``kubernetes.core.k8s_info`` task pointed at this plugin. It answers the read
the way the API server would after the run applied the manifests:

* if the play has ``render_checksum_data`` with an entry for the kind asked
  for (``{"ConfigMap": {...}, "Secret": {...}}``), with one object of that kind
  whose ``data`` is that entry (``null``: no such object, an empty list);
* otherwise with the matching objects (kind, name, namespace) among the
  manifests rendered so far (the play's ``render_outputs``).
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
        if not kind or not name:
            raise AnsibleActionFail("render_k8s_info answers reads of one named object only (kind and name)")

        overrides = self._var(task_vars, "render_checksum_data", {}) or {}
        if kind in overrides:
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
        else:
            resources = []
            outputs = self._var(task_vars, "render_outputs", {}) or {}
            for key in sorted(outputs):
                for obj in yaml.safe_load_all(str(outputs[key])):
                    if not isinstance(obj, dict):
                        continue
                    meta = obj.get("metadata") or {}
                    if obj.get("kind") == kind and meta.get("name") == name and meta.get("namespace") == namespace:
                        resources.append(obj)
        result.update(changed=False, api_found=True, resources=resources)
        return result
