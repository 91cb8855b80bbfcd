"""Which rendered objects the API server can take now (kserve, kubeflow), and how to apply a
role's objects in as few kubernetes.core calls as possible (the core roles).

- ``k8s_applicable``, ``k8s_plan``, ``k8s_label_namespaces``: see each function.
- ``k8s_batches(docs, diff_mode, unchanged)``: the loop for one kubernetes.core.k8s task that applies
  ``docs``: one item holding every object (one module run: each run costs about 0.6 s of
  Python start-up and imports here), or, with ``--diff``, one item per object, because
  Ansible shows the diff of a module's result only when the module applied one object. Objects
  in ``unchanged`` (what the lookup k8s_unchanged returned: an apply would not change them) are
  left out, so a no-op makes no module run.
- ``k8s_applied(registered, unchanged)``: the objects such a task returned, from either shape,
  then those it left out as ``unchanged`` (the live objects).
- ``k8s_pending(docs, unchanged)``: ``docs`` without those in ``unchanged`` (same kind, namespace
  and name).
- ``k8s_preview(docs, diff_mode)``: what a real run would create, for check mode before the
  namespace exists (the API server cannot dry-run objects in it): one line per object, and with
  ``--diff`` the object as YAML; a Secret shows its keys, never its values.
- ``k8s_forbidden(result)``: whether a failed kubernetes.core result (or its message) is the API
  server's 403 Forbidden; ``k8s_forbidden_reason(result)``: the API server's own sentence, such as
  ``User "alice" cannot get resource "apiservices" in API group "apiregistration.k8s.io" at the
  cluster scope`` ('' if none); ``k8s_unreachable(result)``: when the API server did not answer
  (connection refused, reset, timed out), a short reason such as ``connection refused``, else '';
  ``k8s_failed_msg(result)``: the message of a failed result or of its first failed loop item.
  roles/ai_stack/tasks/api_error.yml turns them into one line. ``k8s_invalid(result)``: whether it
  is a 422 Invalid (roles/model_runner replaces a Deployment whose outside edits make the apply
  invalid).
"""
import re

# Not a bare "Forbidden": a 422's field causes say "Forbidden: may not specify more than 1 volume type".
_FORBIDDEN = re.compile(r"\(403\)|Reason: Forbidden\b|\bis forbidden:|status: 403|'status': 403|^Exception '403\b"
                        r'|"reason":"Forbidden"')
_INVALID = re.compile(r"\(422\)|Unprocessable Entity|\"reason\":\"Invalid\"|\"code\":422")
_REASON = re.compile(r'[Uu]ser "[^"]*" cannot .*?(?:at the cluster scope|in the namespace "[^"]*")')


def k8s_applicable(docs, apis, namespaces=None):
    """Split manifests into those the API server serves now and the rest.

    docs: parsed manifests; apis: k8s_cluster_info's ``apis`` (group/version -> kind -> info);
    namespaces: names of existing namespaces. An object is applicable when its
    apiVersion/kind is served and, if namespaced, its namespace exists. Used in check
    mode, where nothing is created (a dry run in a missing namespace or of a kind whose
    CRD is not there yet fails), and on removal, where CRDs may already be gone.
    """
    existing = set(namespaces or [])
    served, skipped = [], []
    for doc in docs or []:
        if not doc:
            continue
        kinds = (apis or {}).get(doc.get("apiVersion"), {})
        info = kinds.get(doc.get("kind"))
        ns = (doc.get("metadata") or {}).get("namespace")
        if info is None:
            skipped.append(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')} ({doc.get('apiVersion')} not served yet)")
        elif info.get("namespaced") and ns and ns not in existing:
            skipped.append(f"{doc.get('kind')} {ns}/{doc.get('metadata', {}).get('name')} (namespace {ns} does not exist yet)")
        else:
            served.append(doc)
    return {"served": served, "skipped": skipped}


def k8s_label_namespaces(docs, labels):
    """Add ``labels`` to every Namespace in a manifest list.

    An upstream Namespace carries only its name, so a server-side apply owns no
    field of it; the API server then drops the applier's empty entry from
    managedFields and converts the object again on the next apply, which reports
    a change once more. Owning a label keeps the second run a no-op.
    """
    out = []
    for doc in docs or []:
        if doc and doc.get("kind") == "Namespace" and doc.get("apiVersion") == "v1":
            meta = dict(doc.get("metadata") or {})
            meta["labels"] = {**(labels or {}), **(meta.get("labels") or {})}
            doc = {**doc, "metadata": meta}
        out.append(doc)
    return out


def k8s_plan(docs, apis, namespaces=None, check_mode=False):
    """What to apply now: {"apply": [...], "skipped": [...]}.

    A real run applies every manifest (the API server creates namespaces and CRDs in
    order). Check mode applies (dry-runs) only what k8s_applicable finds servable and
    lists the rest as skipped, so one task serves both modes.
    """
    if not check_mode:
        return {"apply": [d for d in docs or [] if d], "skipped": []}
    found = k8s_applicable(docs, apis, namespaces)
    return {"apply": found["served"], "skipped": found["skipped"]}


def _key(obj):
    meta = obj.get("metadata") or {}
    return (obj.get("kind"), meta.get("namespace") or "", meta.get("name"))


def k8s_pending(docs, unchanged=None):
    """The objects of ``docs`` that are not in ``unchanged`` (matched by kind, namespace and name)."""
    done = {_key(u) for u in unchanged or [] if u}
    return [d for d in docs or [] if d and _key(d) not in done]


def k8s_batches(docs, diff_mode=False, unchanged=None):
    """Loop items for a k8s task whose ``definition`` is the item (a list of objects)."""
    docs = k8s_pending(docs, unchanged)
    if not docs:
        return []
    return [[d] for d in docs] if diff_mode else [docs]


def k8s_applied(registered, unchanged=None):
    """The objects a k8s task looping over k8s_batches returned (skipped items give none), then
    the live objects it did not apply because an apply would not change them."""
    out = []
    for item in (registered or {}).get("results") or []:
        result = item.get("result") or {}
        for one in (result.get("results") if "results" in result else [item]):
            obj = one.get("result") or {}
            if obj.get("kind"):
                out.append(obj)
    return out + [u for u in unchanged or [] if u]


def k8s_preview(docs, diff_mode=False):
    """Lines for a debug task: "would create Kind namespace/name", plus the YAML with --diff."""
    import json  # pylint: disable=import-outside-toplevel
    import yaml  # pylint: disable=import-outside-toplevel  (not at plugin load: see cluster.py)

    lines = []
    for doc in docs or []:
        if not doc:
            continue
        meta = doc.get("metadata") or {}
        where = f"{meta['namespace']}/" if meta.get("namespace") else ""
        lines.append(f"would create {doc.get('kind')} {where}{meta.get('name')}")
        if diff_mode:
            # Plain data: Ansible's templated strings are str subclasses that safe_dump refuses.
            shown = json.loads(json.dumps(doc))
            if shown.get("kind") == "Secret":
                shown = {**shown, **{k: {key: "<hidden>" for key in (shown.get(k) or {})}
                                     for k in ("data", "stringData") if k in shown}}
            lines.append(yaml.safe_dump(shown, sort_keys=False, default_flow_style=False))
    return lines


def _failed_text(result, keys=("msg", "reason", "body", "error", "exception")):
    """The text of a failed result: its own keys, and those of its failed loop items."""
    if not isinstance(result, dict):
        return str(result or "")
    parts = [str(result.get(k, "")) for k in keys]
    for item in result.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            parts += [str(item.get(k, "")) for k in keys]
    return " ".join(parts)


def _is_status(result, code, pattern):
    """Whether a failed result (or message) is the API server's ``code``: its own numeric status
    (``status``/``error`` of the result or a failed loop item) decides when there is one (a 422's
    field causes may say "Forbidden"), else its text matches ``pattern``."""
    if isinstance(result, dict):
        items = [result] + [i for i in result.get("results") or [] if isinstance(i, dict) and i.get("failed")]
        codes = [c for i in items for c in (i.get("status"), i.get("error")) if isinstance(c, int)]
        if codes:
            return code in codes
    return bool(pattern.search(_failed_text(result)))


def k8s_forbidden(result):
    """True when a failed kubernetes.core result (dict) or message (str) is a 403 Forbidden.

    kubernetes.core reports it in ``msg`` (``Failed to ...: (403) Reason: Forbidden``) or, for
    apply, in ``error``/``status``; a message such as ``nodes is forbidden: User "x" cannot list
    ...`` comes from the API server's status text."""
    return _is_status(result, 403, _FORBIDDEN)


def k8s_forbidden_reason(result):
    """The API server's "User ... cannot ..." sentence in a failed result or message, else ''.

    kubernetes.core quotes the response body, so its quotes arrive escaped (\\")."""
    m = _REASON.search(_failed_text(result, ("msg",)).replace('\\"', '"'))
    return m.group(0) if m else ""


_UNREACHABLE = [
    (re.compile(r"Connection refused|ConnectionRefusedError", re.I), "connection refused"),
    (re.compile(r"Connection reset|RemoteDisconnected|ProtocolError|Connection aborted", re.I), "connection reset"),
    # Not "Timed out waiting on resource": that is a wait that ran out, with the server answering.
    (re.compile(r"ReadTimeoutError|ConnectTimeoutError|Read timed out|Connect timeout|connection timed out", re.I),
     "timed out"),
    (re.compile(r"NewConnectionError|Max retries exceeded|Failed to establish a new connection"
                r"|Name or service not known|No route to host", re.I), "no connection"),
]


def k8s_unreachable(result):
    """Why a failed kubernetes.core result says the API server did not answer, or ''.

    The client's urllib3 errors reach the message as text (``Max retries exceeded ... (Caused by
    NewConnectionError(... Connection refused))``, or ``Value of unknown type: <class
    'urllib3.exceptions.NewConnectionError'>``); a wait whose server went away fails the same way."""
    text = _failed_text(result, ("msg", "exception", "error"))
    if k8s_forbidden(result):
        return ""
    for pattern, reason in _UNREACHABLE:
        if pattern.search(text):
            return reason
    return ""


def k8s_invalid(result):
    """True when a failed kubernetes.core result (dict) or message (str) is a 422 Invalid: the API server
    refused the object as it would be after the change (for an apply: ours merged with the fields other
    field managers own on the live object, as after a ``kubectl patch`` or ``kubectl edit``)."""
    return _is_status(result, 422, _INVALID)


def k8s_failed_msg(result):
    """The message of a failed result, or of its first failed loop item (a loop's own msg is only
    "One or more items failed")."""
    if not isinstance(result, dict):
        return str(result or "")
    for item in result.get("results") or []:
        if isinstance(item, dict) and item.get("failed") and item.get("msg"):
            return str(item["msg"])
    return str(result.get("msg") or "unknown error")


class FilterModule:
    """Which manifests the API server can take now."""

    def filters(self):
        return {"k8s_applicable": k8s_applicable, "k8s_plan": k8s_plan, "k8s_label_namespaces": k8s_label_namespaces,
                "k8s_batches": k8s_batches, "k8s_applied": k8s_applied, "k8s_pending": k8s_pending,
                "k8s_preview": k8s_preview,
                "k8s_forbidden": k8s_forbidden, "k8s_forbidden_reason": k8s_forbidden_reason,
                "k8s_unreachable": k8s_unreachable, "k8s_failed_msg": k8s_failed_msg,
                "k8s_invalid": k8s_invalid}
