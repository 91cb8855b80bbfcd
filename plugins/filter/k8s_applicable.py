"""Used by the kserve and kubeflow roles: which rendered objects the API server can take now."""


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


class FilterModule:
    """Which manifests the API server can take now."""

    def filters(self):
        return {"k8s_applicable": k8s_applicable, "k8s_plan": k8s_plan, "k8s_label_namespaces": k8s_label_namespaces}
