"""Filters shared by the stack's roles: input checks, HPA ownership, config checksums, waits.

Each role used to spell these out in YAML; they live here once, unit-tested in
tests/test_filters.py. Found through ansible.cfg's ``filter_plugins``.

- ``resources_errors(resources, var)``: problems with a container ``resources`` value
  ({requests: {cpu, memory}, limits: {cpu, memory}}), each naming ``var``; [] when good.
- ``probe_errors(probe, var)``: problems with a probe timing dict (positive integers).
- ``image_errors(image, var)``: problems with an image reference (a tag or digest, not latest).
- ``hpa_targets(hpas)``: names of the Deployments that HorizontalPodAutoscalers scale.
- ``data_checksum(resources)``: sha256 of the ``data`` of the first object k8s_info returned
  (stable key order), so a changed ConfigMap or Secret rolls the pods that read it.
- ``retries(timeout, delay)``: how many attempts of ``delay`` seconds fill ``timeout``.
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


def hpa_targets(hpas):
    """Names of the Deployments the given HorizontalPodAutoscalers scale."""
    return sorted({
        h["spec"]["scaleTargetRef"]["name"]
        for h in hpas or []
        if h.get("spec", {}).get("scaleTargetRef", {}).get("kind") == "Deployment"
    })


def data_checksum(resources):
    """sha256 of the first object's ``data`` (sorted keys); of {} when there is none."""
    data = (resources[0].get("data") if resources else None) or {}
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(", ", ": ")).encode()).hexdigest()


def retries(timeout, delay):
    """Attempts ``delay`` seconds apart that cover ``timeout`` seconds (at least 1)."""
    return max(1, math.ceil(int(timeout) / int(delay)))


class FilterModule:
    """Filters shared by the stack's roles."""

    def filters(self):
        return {
            "resources_errors": resources_errors,
            "probe_errors": probe_errors,
            "image_errors": image_errors,
            "hpa_targets": hpa_targets,
            "data_checksum": data_checksum,
            "retries": retries,
        }
