"""Filters shared by the stack's roles: input checks, config checksums, waits.

Each role used to spell these out in YAML; they live here once, unit-tested in
tests/test_filters.py. Found through ansible.cfg's ``filter_plugins``.

- ``resources_errors(resources, var)``: problems with a container ``resources`` value
  ({requests: {cpu, memory}, limits: {cpu, memory}}), each naming ``var``; [] when good.
- ``probe_errors(probe, var)``: problems with a probe timing dict (positive integers).
- ``image_errors(image, var)``: problems with an image reference (a tag or digest, not latest).
- ``data_checksum(data)``: sha256 of a ConfigMap's ``data`` (stable key order), so a changed
  ConfigMap rolls the pods that read it. Never for a Secret: a hash of a key is a fingerprint of
  it (the chatbot rolls on the Secret's resourceVersion instead).
- ``retries(timeout, delay)``: how many attempts of ``delay`` seconds fill ``timeout``.
- ``tags_select(tags, run_tags, skip_tags)``: whether a role with these ``tags`` runs under
  ``--tags`` / ``--skip-tags`` (Ansible's rules);
  ``roles_for_tags({role: tags}, run_tags, skip_tags)``: the roles that run, in order. site.yml
  validates the inputs of exactly those roles before the first of them changes anything.
- ``url_ports(urls)``: the TCP port of each URL (its own, else 443 for https and 80 for http),
  for the NetworkPolicy that lets the model runner reach its registry mirrors.
- ``claim_users(pods, claim, exclude)``: the pods (as read from the API) that keep the claim ``claim``
  from being deleted: scheduled on a node, not finished, mounting it (Kubernetes' pvc-protection rule),
  less those whose labels include ``exclude``; the storage role refuses to delete a claim that a pod
  the run leaves behind still mounts.
"""

import hashlib
import json
import math
import re
from decimal import Decimal, InvalidOperation

_CPU = re.compile(r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$")
_MEMORY = re.compile(r"^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _cpu(value):
    text = str(value)
    return Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)


def _memory(value):
    number, unit = re.match(r"^([0-9]+)(.*)$", str(value)).groups()
    return Decimal(number) * _MEMORY_UNITS[unit]


def resources_errors(resources, var):
    """Problems with a container resources dict, each a sentence naming ``var``."""
    if not isinstance(resources, dict):
        return [f"{var} must be a dict with requests and limits (got {resources!r})"]
    errors = []
    for section in ("requests", "limits"):
        values = resources.get(section)
        if not isinstance(values, dict):
            errors.append(f"{var}.{section} must be a dict with cpu and memory (got {values!r})")
            continue
        for key, pattern, example in (("cpu", _CPU, "500m or 1"), ("memory", _MEMORY, "512Mi or 4Gi, not 4GB")):
            if not pattern.match(str(values.get(key, ""))):
                errors.append(f"{var}.{section}.{key} must look like {example} (got {values.get(key)!r})")
    if errors:
        return errors
    try:
        for key, parse in (("cpu", _cpu), ("memory", _memory)):
            if parse(resources["requests"][key]) > parse(resources["limits"][key]):
                errors.append(f"{var}.requests.{key} ({resources['requests'][key]}) is above "
                              f"{var}.limits.{key} ({resources['limits'][key]})")
    except (InvalidOperation, KeyError):  # pragma: no cover - the patterns above rule these out
        errors.append(f"{var} has a quantity that cannot be compared")
    return errors


def probe_errors(probe, var):
    """Problems with a probe timing dict: every value a positive integer."""
    if not isinstance(probe, dict) or not probe:
        return [f"{var} must be a dict of positive integers (got {probe!r})"]
    return [f"{var}.{key} must be a positive integer (got {value!r})"
            for key, value in probe.items() if not str(value).isdigit() or int(value) < 1]


def image_errors(image, var):
    """Problems with an image reference: it must carry a tag or digest, not latest."""
    text = str(image or "")
    last = text.rsplit("/", 1)[-1]
    if "@" not in text and ":" not in last:
        return [f"{var} must be pinned to a tag or digest (got {text!r})"]
    if "@" not in text and last.endswith(":latest"):
        return [f"{var} must not use the latest tag (got {text!r})"]
    return []


def data_checksum(data):
    """sha256 of ``data`` (sorted keys, values as strings, as the API server stores them)."""
    data = {str(k): str(v) for k, v in (data or {}).items()}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(", ", ": ")).encode()).hexdigest()


def retries(timeout, delay):
    """Attempts ``delay`` seconds apart that cover ``timeout`` seconds (at least 1)."""
    return max(1, math.ceil(int(timeout) / int(delay)))


def tags_select(tags, run_tags=None, skip_tags=None):
    """True when a task or role with ``tags`` runs, by ansible-playbook's rules for
    ``ansible_run_tags`` and ``ansible_skip_tags`` (``always``, ``never``, ``tagged``,
    ``untagged``, ``all``)."""
    tags = set(tags or [])
    run = set(run_tags or ["all"])
    skip = set(skip_tags or [])
    if tags & skip or ("tagged" in skip and tags) or ("untagged" in skip and not tags):
        return False
    if "always" in tags and "always" not in skip:
        return True
    if "never" in tags and not (tags - {"never"}) & run:
        return False
    return bool(
        "all" in run
        or tags & run
        or ("tagged" in run and tags)
        or ("untagged" in run and not tags)
    )


def roles_for_tags(roles, run_tags=None, skip_tags=None):
    """The names in ``roles`` ({name: tags}, in play order) that run with these tags."""
    return [name for name, tags in (roles or {}).items() if tags_select(tags, run_tags, skip_tags)]


def hpa_scale_out_reason(hpa):
    """Why an HPA (autoscaling/v2, as read from the API) did not scale out, in one sentence, from
    its status: a condition that is False (the metrics API gave nothing, the target is missing),
    else the CPU it saw against its target; never the raw status."""
    status = (hpa or {}).get("status") or {}
    consequence = {"AbleToScale": "the HPA cannot read or change its target's scale (is the Deployment there?)",
                   "ScalingActive": "without CPU figures from the metrics API (metrics-server, `kubectl top pod`) "
                                    "an HPA cannot scale"}
    for cond in status.get("conditions") or []:
        if cond.get("type") in consequence and cond.get("status") == "False":
            return (f"{cond['type']} is False ({cond.get('reason', '')}: {cond.get('message', '')}); "
                    f"{consequence[cond['type']]}")
    targets = {m["resource"]["name"]: (m["resource"].get("target") or {}).get("averageUtilization")
               for m in ((hpa or {}).get("spec") or {}).get("metrics") or [] if m.get("type") == "Resource"}
    for metric in status.get("currentMetrics") or []:
        current = (metric.get("resource") or {}).get("current") or {}
        name = (metric.get("resource") or {}).get("name")
        if name in targets and current.get("averageUtilization") is not None:
            return (f"the load kept {name} at {current['averageUtilization']} % of requests, under the "
                    f"{targets[name]} % target, with {status.get('currentReplicas', '?')} replica(s): the load "
                    "is too light (raise autoscaling_loadtest_parallelism or autoscaling_loadtest_requests)")
    return ("the HPA reports no current metrics yet (a new HPA needs a minute of metrics; `kubectl describe hpa` "
            "shows its events)")


def url_ports(urls):
    """[443 or 80 or the URL's own port, ...] for a list of http(s) URLs."""
    from urllib.parse import urlsplit

    ports = []
    for url in urls or []:
        parts = urlsplit(str(url))
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
        if port is None:
            raise ValueError(f"url_ports: not an http(s) URL: {url!r}")
        ports.append(port)
    return ports


def claim_users(pods, claim, exclude=None):
    """The pods that hold PersistentVolumeClaim ``claim`` in use, as the pvc-protection controller sees
    it: scheduled (spec.nodeName set), not Succeeded or Failed, with a volume that names the claim.
    A deleted claim stays Terminating until none is left. Pods whose labels include every label of
    ``exclude`` (a dict) are left out."""
    users = []
    for pod in pods or []:
        spec = pod.get("spec") or {}
        if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if exclude and all(labels.get(k) == v for k, v in exclude.items()):
            continue
        if any((v.get("persistentVolumeClaim") or {}).get("claimName") == claim for v in spec.get("volumes") or []):
            users.append(pod)
    return users


def hpa_sample(hpa, time):
    """One point of the load test's chart from an HPA (autoscaling/v2) as read at ``time`` (epoch seconds):
    {time, current, desired, cpu}; cpu is the HPA's current average CPU utilisation in % of the request,
    None while it has no metrics. An HPA that is not there (an empty lookup) gives zeros."""
    hpa = hpa if isinstance(hpa, dict) else {}
    status = hpa.get("status") or {}
    cpu = None
    for metric in status.get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if resource.get("name") == "cpu" and (resource.get("current") or {}).get("averageUtilization") is not None:
            cpu = int(resource["current"]["averageUtilization"])
    return {"time": float(time), "current": int(status.get("currentReplicas") or 0),
            "desired": int(status.get("desiredReplicas") or 0), "cpu": cpu}


def hpa_samples_table(samples, start=None):
    """The load test's samples (hpa_sample) as report lines: seconds from ``start`` (else the first
    sample), current and desired replicas, CPU utilisation ('-' without metrics)."""
    rows = sorted(samples or [], key=lambda r: float(r["time"]))
    if not rows:
        return []
    origin = float(start) if start not in (None, "") else float(rows[0]["time"])
    return [f"{float(r['time']) - origin:7.1f} s  replicas {r['current']} -> {r['desired']}  CPU "
            + (f"{r['cpu']} %" if r.get("cpu") is not None else "-") for r in rows]


class FilterModule:
    """Filters shared by the stack's roles."""

    def filters(self):
        return {
            "resources_errors": resources_errors,
            "probe_errors": probe_errors,
            "image_errors": image_errors,
            "data_checksum": data_checksum,
            "retries": retries,
            "tags_select": tags_select,
            "claim_users": claim_users,
            "roles_for_tags": roles_for_tags,
            "hpa_sample": hpa_sample,
            "hpa_samples_table": hpa_samples_table,
            "hpa_scale_out_reason": hpa_scale_out_reason,
            "url_ports": url_ports,
        }
