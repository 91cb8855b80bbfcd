"""Filters for the kubeflow role: which rendered objects the API server can take now."""


def kubeflow_applicable(docs, apis, namespaces=None):
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


class FilterModule:
    def filters(self):
        return {"kubeflow_applicable": kubeflow_applicable}
