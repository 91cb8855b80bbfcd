"""Which objects a kubernetes.core.k8s apply would leave as they are, asked of the API server.

A no-op run of the stack used to spend most of its time starting kubernetes.core.k8s: each module
run is a new Python process that imports the Kubernetes client (about 0.6 s here), to find that
nothing changes. This lookup runs in the task's own process, which has the client loaded already
(the ai_stack_preload callback), and does for each object what that module does in check mode: it
reads the object, applies it server-side with ``dryRun=All``, and compares the two with
kubernetes.core's own ``diff_objects``. With ``wait``, the live object must also meet the condition
the module would wait for (kubernetes.core's waiter predicate: a Deployment available, or
``wait_condition``). The client, the dry run, the comparison and the predicate are kubernetes.core's.

It returns the live objects (without ``metadata.managedFields``) that such an apply would not change. The role applies the rest with kubernetes.core.k8s, as before; anything this
lookup cannot decide (the object or its namespace missing, an error, a refusal) is left to that
module, so its messages and its waits are unchanged.
"""
from __future__ import annotations

DOCUMENTATION = """
    name: k8s_unchanged
    short_description: The objects a server-side apply would not change, decided by a dry run
    description:
      - For each manifest, reads the object and applies it server-side with dryRun=All, as kubernetes.core.k8s
        (apply, server_side_apply) does in check mode, and compares the two with kubernetes.core's diff_objects.
      - Returns the live objects whose apply would change nothing and that, with I(wait), already meet the
        condition the module would wait for. Objects it cannot decide are left out (the module then applies them).
      - Runs in the task's process, with kubernetes.core's client; needs the kubeconfig on this machine.
    options:
      _terms:
        description: The manifests (dicts with apiVersion, kind, metadata.name), or lists of them.
        required: true
      kubeconfig:
        description: Path of the kubeconfig.
        type: str
      context:
        description: The kubeconfig's context; its current context when unset.
        type: str
      server_side_apply:
        description: The module's server_side_apply (field_manager, force_conflicts).
        type: dict
        required: true
      wait:
        description: Whether the module would wait; then the live object must meet its condition already.
        type: bool
        default: false
      wait_condition:
        description: The module's wait_condition (type, status, reason); unset, kubernetes.core's predicate for the kind.
        type: dict
      state:
        description: The module's state; only C(present) is decided here (anything else returns nothing).
        type: str
        default: present
      enabled:
        description: False returns nothing, so the module applies every object (a remote controller, or
          ai_stack_skip_unchanged=false).
        type: bool
        default: true
"""

RETURN = """
    _list:
      description: The live objects an apply would leave as they are.
      type: list
      elements: dict
"""

import json

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

# At load time, as kubernetes.core's own lookup: the ai_stack_preload callback loads this plugin once, in
# Ansible's main process, so each task's worker inherits the client instead of importing it again.
try:
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import K8SClient, get_api_client
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.service import (
        decode_response, diff_objects, hide_fields)
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.waiter import get_waiter
    from kubernetes.dynamic.exceptions import NotFoundError
except ImportError as exc:  # reported when the lookup runs
    IMPORT_ERROR = exc
else:
    IMPORT_ERROR = None

display = Display()


def _flatten(terms):
    out = []
    for term in terms or []:
        if isinstance(term, (list, tuple)):
            out.extend(_flatten(term))
        elif term:
            out.append(term)
    return out


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        # Plain data: Ansible's templated values are subclasses, and the client changes what it sends.
        manifests = json.loads(json.dumps(_flatten(terms)))
        ssa = dict(self.get_option("server_side_apply") or {})
        # A client-side apply (no server_side_apply) is not what the dry run below compares.
        if not manifests or not ssa or not self.get_option("enabled") or self.get_option("state") != "present":
            return []
        if IMPORT_ERROR:
            raise AnsibleError(f"k8s_unchanged needs kubernetes.core and the Kubernetes client: {IMPORT_ERROR}")
        auth = {k: self.get_option(k) for k in ("kubeconfig", "context") if self.get_option(k)}
        wait = self.get_option("wait")
        condition = self.get_option("wait_condition") or None
        try:
            api = get_api_client(**auth)
        except Exception as exc:  # pylint: disable=broad-except
            display.vvv(f"k8s_unchanged: no client ({exc}); the module applies every object")
            return []
        # kubernetes.core's client in dry-run mode, as the module builds it in check mode.
        dry = K8SClient(configuration=api.configuration, client=api.client, dry_run=True)

        unchanged = []
        for manifest in manifests:
            meta = manifest.get("metadata") or {}
            what = f"{manifest.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"
            try:
                resource = api.resource(manifest["kind"], manifest["apiVersion"])
                params = {"name": meta["name"]}
                if resource.namespaced:
                    params["namespace"] = meta.get("namespace")
                try:
                    live = api.get(resource, **params)
                except NotFoundError:
                    display.vvv(f"k8s_unchanged: {what} does not exist")
                    continue
                after, _ = decode_response(dry.apply(resource, manifest, meta.get("namespace"), serialize=False,
                                                     server_side=True, **ssa))
                match, _ = diff_objects(live.to_dict(), after)
                if not match:
                    display.vvv(f"k8s_unchanged: an apply would change {what}")
                    continue
                if wait and not get_waiter(api, resource, condition=condition).predicate(live):
                    display.vvv(f"k8s_unchanged: {what} does not meet the wait condition yet")
                    continue
                unchanged.append(hide_fields(live.to_dict(), ["metadata.managedFields"]))
            except Exception as exc:  # pylint: disable=broad-except
                # The module makes the same calls and explains the failure.
                display.vvv(f"k8s_unchanged: left {what} to the module ({type(exc).__name__})")
        return unchanged
