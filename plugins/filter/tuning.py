"""Filters of the tuning role: probe calibration (`--tags calibrate`) and right-sizing (`--tags rightsize`).

Both turn measurements read from the cluster into values of the project's own variables, with the
reasons, so a person can check the numbers before keeping them (the role writes them to a vars file,
never into group_vars).

Calibration (``calibrate_samples``, ``probe_recommendation``): each start of the model runner is timed
from the pod's own timestamps. The startup probe's clock starts when the container starts, so the load
time of one start is the Ready condition's lastTransitionTime minus the container's
``state.running.startedAt``; the pod's creationTimestamp to Ready (scheduling, image, sidecar included)
is reported beside it. A container that was restarted during its start (the probe killed it, or it
crashed) has lost its first start time: that sample is measured from the pod's creation instead, an
upper bound. The recommendation is the Kubernetes documentation's rule for startup probes,
``failureThreshold * periodSeconds`` long enough for the worst start, with the chapter's "measured load
time plus a buffer": budget = worst + max(worst * buffer_percent / 100, min_buffer_seconds).

Right-sizing (``rightsize_series``, ``rightsize_recommendation``): PodMetrics samples (metrics.k8s.io,
as metrics-server serves them) per container over a window; requests = a high percentile of usage plus a
margin (by default the 90th percentile plus 15 %, the Vertical Pod Autoscaler recommender's target:
`targetCPUPercentile` 0.9 and `recommendation-margin-fraction` 0.15), limits = a higher percentile plus
a larger margin (by default the 99th plus 50 %): the limit is where CPU is throttled and memory is
OOM-killed, so it must sit above the peaks with room for what the window did not see.

Nothing heavy is imported at load time (tests/test_filters.py): plain Python only.
"""

import math
import re
from datetime import datetime, timezone
from decimal import Decimal

_SUFFIX = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
           "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
           "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30), "Ti": Decimal(2**40)}
_QUANTITY = re.compile(r"^([0-9.]+)(e[+-]?[0-9]+)?(n|u|m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
MI = 2**20


class TuningError(ValueError):
    """Input the filters cannot use (Ansible shows the message)."""


def quantity(value):
    """A Kubernetes quantity ('250m', '1234567n', '64Mi', '4Gi', 2) as a float (cores or bytes)."""
    text = str(value).strip()
    m = _QUANTITY.match(text)
    if not m:
        raise TuningError(f"not a Kubernetes quantity: {value!r}")
    number = Decimal(m.group(1) + (m.group(2) or ""))
    return float(number * _SUFFIX[m.group(3) or ""])


def cpu_text(cores):
    """Cores as whole millicores, rounded up: 0.1234 -> '124m'."""
    return f"{max(1, math.ceil(round(cores * 1000, 6)))}m"


def memory_text(size):
    """Bytes as whole mebibytes, rounded up: 100 MiB + 1 byte -> '101Mi'."""
    return f"{max(1, math.ceil(round(size / MI, 6)))}Mi"


def _time(text):
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(timezone.utc)


def _ready_since(pod):
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return cond.get("lastTransitionTime")
    return None


def _container_status(pod, name):
    status = pod.get("status") or {}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("name") == name:
            return cs
    return None


def calibrate_samples(pods, container="model-runner", exclude_uids=None):
    """One sample per Ready pod (each pod once, by uid), oldest first: {pod, uid, created, started, ready,
    load_seconds, pod_seconds, restarts, measured_from}. ``pods`` are Pod objects as k8s_info returns them,
    possibly the same pod several times (read after each restart); pods in ``exclude_uids`` (those that ran
    before the calibration) and pods that are not Ready or are being deleted are left out."""
    seen, out = set(exclude_uids or []), []
    for pod in sorted(pods or [], key=lambda p: p["metadata"].get("creationTimestamp", "")):
        meta = pod.get("metadata") or {}
        uid = meta.get("uid")
        ready = _ready_since(pod)
        if uid in seen or meta.get("deletionTimestamp") or not ready:
            continue
        status = _container_status(pod, container)
        running = ((status or {}).get("state") or {}).get("running") or {}
        if not running.get("startedAt"):
            continue
        seen.add(uid)
        created, started, ready_at = _time(meta["creationTimestamp"]), _time(running["startedAt"]), _time(ready)
        restarts = int(status.get("restartCount") or 0)
        load_from = created if restarts else started
        out.append({
            "pod": meta.get("name"), "uid": uid, "node": (pod.get("spec") or {}).get("nodeName", ""),
            "created": meta["creationTimestamp"], "started": running["startedAt"], "ready": ready,
            "load_seconds": max(0, int((ready_at - load_from).total_seconds())),
            "pod_seconds": max(0, int((ready_at - created).total_seconds())),
            "restarts": restarts,
            "measured_from": "pod's creation (the container was restarted during its start)" if restarts
            else "container's start",
        })
    return out


def calibrate_table(samples):
    """The measured starts as report lines: pod, created, container started, Ready, both durations."""
    return [f"{s['pod']}: created {s['created']}, container started {s['started']}, Ready {s['ready']}: "
            f"load time {s['load_seconds']} s (from the {s['measured_from']}), {s['pod_seconds']} s from "
            f"the pod's creation" + (f", restarted {s['restarts']}x" if s.get("restarts") else "") for s in samples or []]


def _probe(values, name):
    try:
        return {k: int(values[k]) for k in ("period_seconds", "failure_threshold", "timeout_seconds")}
    except (KeyError, TypeError, ValueError) as exc:
        raise TuningError(f"{name} needs integer period_seconds, failure_threshold and timeout_seconds "
                          f"(got {values!r})") from exc


def probe_recommendation(samples, startup_probe, readiness_probe, buffer_percent=50, min_buffer_seconds=30):
    """model_runner_startup_probe and model_runner_readiness_probe values for the measured starts.

    Startup: the period and timeout are kept (the period is how often the runner is asked, so Ready
    comes at most one period after the model is there; the timeout is one request's), and
    failure_threshold = ceil(budget / period) with budget = worst + max(worst * buffer_percent / 100,
    min_buffer_seconds). Readiness: kept: it runs only once the startup probe has passed, so the load
    time never counts against it, and it needs no initial delay. Returns {model_runner_startup_probe,
    model_runner_readiness_probe, worst_seconds, median_seconds, budget_seconds, current_budget_seconds,
    reasons: [lines]}."""
    if not samples:
        raise TuningError("no start of the model runner was measured (no Ready pod after the restarts)")
    startup = _probe(startup_probe, "model_runner_startup_probe")
    readiness = _probe(readiness_probe, "model_runner_readiness_probe")
    if float(buffer_percent) < 0 or float(min_buffer_seconds) < 0:
        raise TuningError("the buffer must not be negative")
    loads = sorted(int(s["load_seconds"]) for s in samples)
    worst = loads[-1]
    median = loads[len(loads) // 2] if len(loads) % 2 else (loads[len(loads) // 2 - 1] + loads[len(loads) // 2]) / 2
    median = int(median) if median == int(median) else median
    buffer = max(worst * float(buffer_percent) / 100, float(min_buffer_seconds))
    budget = worst + buffer
    period = startup["period_seconds"]
    threshold = max(1, math.ceil(round(budget / period, 6)))
    current = startup["period_seconds"] * startup["failure_threshold"]
    recommended = dict(startup, failure_threshold=threshold)
    restarted = [s for s in samples if s.get("restarts")]
    reasons = [
        f"{len(loads)} start(s) measured, container start to Ready: "
        + ", ".join(f"{s['load_seconds']} s" for s in samples)
        + f" (median {median} s, worst {worst} s); pod creation to Ready: "
        + ", ".join(f"{s['pod_seconds']} s" for s in samples) + ".",
        f"Startup budget = worst {worst} s + buffer {buffer:g} s (the larger of {float(buffer_percent):g} % of it "
        f"and {float(min_buffer_seconds):g} s) = {budget:g} s: period_seconds {period} (kept) x failure_threshold "
        f"{threshold} = {period * threshold} s (now {startup['period_seconds']} x {startup['failure_threshold']} "
        f"= {current} s).",
        "Readiness kept as it is: it is probed only after the startup probe passed, so loading never counts "
        "against it and it needs no initial delay.",
    ]
    if restarted:
        reasons.append(
            "Restarted during its start: " + ", ".join(f"{s['pod']} ({s['restarts']}x)" for s in restarted)
            + ": the current startup budget (or the runner) killed it; those starts are timed from the pod's "
            "creation, an upper bound.")
    if worst >= current:
        reasons.append(f"The worst start ({worst} s) reached the current budget ({current} s): the startup probe "
                       "kills such a start (CrashLoopBackOff); apply the recommendation.")
    return {"model_runner_startup_probe": recommended, "model_runner_readiness_probe": readiness,
            "worst_seconds": worst, "median_seconds": median, "budget_seconds": period * threshold,
            "current_budget_seconds": current, "reasons": reasons}


def _workload_of(pod_name, workloads):
    """The workload (Deployment name) a pod of a ReplicaSet belongs to: <deployment>-<hash>-<suffix>."""
    for w in workloads:
        prefix = w["name"] + "-"
        if pod_name.startswith(prefix) and len(pod_name[len(prefix):].split("-")) == 2:
            return w
    return None


def rightsize_series(results, workloads):
    """Usage samples per project variable from PodMetrics lists (k8s_info results of metrics.k8s.io
    PodMetrics, one per sampling, or the lists themselves). ``workloads``: [{name: Deployment, containers:
    {container: resources variable}}]. Returns {variable: {workload, container, cpu: [[time, cores, pod]],
    memory: [[time, bytes, pod]]}}, oldest first, each (pod, container, timestamp) once: metrics-server
    answers the same sample until its next scrape, so sampling faster than its resolution repeats values."""
    series, seen = {}, set()
    for w in workloads or []:
        for container, variable in (w.get("containers") or {}).items():
            series[variable] = {"workload": w["name"], "container": container, "cpu": [], "memory": []}
    for result in results or []:
        items = result.get("resources", []) if isinstance(result, dict) else result
        for pm in items or []:
            pod = (pm.get("metadata") or {}).get("name", "")
            w = _workload_of(pod, workloads or [])
            if not w:
                continue
            for c in pm.get("containers") or []:
                variable = (w.get("containers") or {}).get(c.get("name"))
                key = (pod, c.get("name"), pm.get("timestamp"))
                if not variable or key in seen:
                    continue
                seen.add(key)
                usage = c.get("usage") or {}
                if "cpu" in usage:
                    series[variable]["cpu"].append([pm.get("timestamp"), quantity(usage["cpu"]), pod])
                if "memory" in usage:
                    series[variable]["memory"].append([pm.get("timestamp"), quantity(usage["memory"]), pod])
    for s in series.values():
        s["cpu"].sort(key=lambda p: (p[0] or "", p[2]))
        s["memory"].sort(key=lambda p: (p[0] or "", p[2]))
    return series


def percentile(values, pct):
    """The pct-th percentile (0-100) with linear interpolation between the closest ranks (numpy's default)."""
    data = sorted(float(v) for v in values)
    if not data:
        raise TuningError("no value to take a percentile of")
    rank = (len(data) - 1) * float(pct) / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


def rightsize_recommendation(series, current, request_percentile=90, request_margin_percent=15,
                             limit_percentile=99, limit_margin_percent=50, min_cpu="10m", min_memory="16Mi",
                             hpa_targets=None):
    """Requests and limits per project variable from ``rightsize_series``.

    requests = max(percentile(usage, request_percentile) * (1 + request_margin_percent / 100), minimum);
    limits = max(percentile(usage, limit_percentile) * (1 + limit_margin_percent / 100), requests).
    ``current``: {variable: {requests: {cpu, memory}, limits: {cpu, memory}}}, what the roles apply now; a
    variable without samples keeps its current value. ``hpa_targets``: {variable: 'HPA name (target %)'} for
    the containers an HPA scales on CPU utilisation, which is relative to the request. Returns {values:
    {variable: {requests, limits}}, rows: [per variable: figures], reasons: [lines]}."""
    for name, pct in (("request percentile", request_percentile), ("limit percentile", limit_percentile)):
        if not 0 < float(pct) <= 100:
            raise TuningError(f"the {name} must be above 0 and at most 100 (got {pct})")
    if float(limit_percentile) < float(request_percentile) or float(limit_margin_percent) < float(request_margin_percent):
        raise TuningError("the limit's percentile and margin must not be below the request's")
    floor = {"cpu": quantity(min_cpu), "memory": quantity(min_memory)}
    fmt = {"cpu": cpu_text, "memory": memory_text}
    values, rows = {}, []
    reasons = [
        f"requests = the {float(request_percentile):g}th percentile of usage + {float(request_margin_percent):g} % "
        "(the Vertical Pod Autoscaler recommender's target: 90th percentile, 15 % safety margin): enough for "
        "nearly all of the load seen, so the scheduler reserves what the container really uses.",
        f"limits = the {float(limit_percentile):g}th percentile + {float(limit_margin_percent):g} %, never below "
        "the request: a limit is where CPU is throttled and memory OOM-killed, so it sits above the peaks with "
        "room for load the window did not see.",
        f"Floors: {min_cpu} CPU and {min_memory} memory per container. CPU rounded up to whole millicores, "
        "memory to whole Mi.",
    ]
    for variable, s in series.items():
        now = current.get(variable) or {}
        row = {"variable": variable, "workload": s["workload"], "container": s["container"],
               "samples": min(len(s["cpu"]), len(s["memory"]))}
        if not s["cpu"] or not s["memory"]:
            values[variable] = now
            row["kept"] = True
            rows.append(row)
            reasons.append(f"{variable}: no usage sample of container {s['container']} in {s['workload']} "
                           "(not running, or not reported by the metrics API, during the window): kept as it is.")
            continue
        rec = {"requests": {}, "limits": {}}
        for resource in ("cpu", "memory"):
            used = [p[1] for p in s[resource]]
            p_req, p_lim = percentile(used, request_percentile), percentile(used, limit_percentile)
            req = max(p_req * (1 + float(request_margin_percent) / 100), floor[resource])
            lim = max(p_lim * (1 + float(limit_margin_percent) / 100), req)
            rec["requests"][resource], rec["limits"][resource] = fmt[resource](req), fmt[resource](lim)
            row[resource] = {"p_request": p_req, "p_limit": p_lim, "max": max(used),
                             "request": rec["requests"][resource], "limit": rec["limits"][resource],
                             "current_request": ((now.get("requests") or {}).get(resource)),
                             "current_limit": ((now.get("limits") or {}).get(resource))}
        values[variable] = rec
        rows.append(row)
        reasons.append(
            f"{variable} ({s['workload']}/{s['container']}, {row['samples']} samples): CPU p{float(request_percentile):g} "
            f"{cpu_text(row['cpu']['p_request'])}, max {cpu_text(row['cpu']['max'])} -> requests {rec['requests']['cpu']}, "
            f"limits {rec['limits']['cpu']} (now {row['cpu']['current_request']} / {row['cpu']['current_limit']}); memory "
            f"p{float(request_percentile):g} {memory_text(row['memory']['p_request'])}, max {memory_text(row['memory']['max'])} "
            f"-> requests {rec['requests']['memory']}, limits {rec['limits']['memory']} (now "
            f"{row['memory']['current_request']} / {row['memory']['current_limit']}).")
        if variable in (hpa_targets or {}):
            reasons.append(f"{variable}: {hpa_targets[variable]} scales on CPU utilisation, a percentage of this "
                           "CPU request: a new request moves the CPU at which it scales out.")
    if any(0 < r["samples"] < 3 for r in rows):
        reasons.append("Fewer than 3 samples for some containers: widen tuning_rightsize_window_seconds.")
    reasons.append("Only the load during the window is seen: sample while the stack carries its usual load "
                   "(or the load test), not while it idles.")
    return {"values": values, "rows": rows, "reasons": reasons}


def recommended_vars_text(values, marker, header, reasons, width=110):
    """The text of a recommended vars file: ``marker`` as the first line (the role overwrites only files that
    start with it), the ``header`` and ``reasons`` lines as comments (wrapped at ``width``), then ``values``
    (project variable -> value) as one YAML document, in the order given."""
    import textwrap

    import yaml  # on first use: the plugin must load without it (tests/test_filters.py)

    lines = [marker] + [f"# {h}" for h in header] + ["#"]
    for reason in reasons:
        wrapped = textwrap.wrap(str(reason), width=width, break_long_words=False, break_on_hyphens=False) or [""]
        lines += [f"# {wrapped[0]}"] + [f"#   {w}" for w in wrapped[1:]]
    body = yaml.safe_dump(_plain(values), default_flow_style=False, sort_keys=False, width=1000)
    return "\n".join(lines) + "\n---\n" + body


def _plain(value):
    """Ansible's lazy containers and unsafe strings as plain dicts, lists and str (for yaml.safe_dump)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


class FilterModule:
    """Probe calibration and right-sizing (roles/tuning)."""

    def filters(self):
        return {
            "calibrate_samples": calibrate_samples,
            "probe_recommendation": probe_recommendation,
            "calibrate_table": calibrate_table,
            "rightsize_series": rightsize_series,
            "rightsize_recommendation": rightsize_recommendation,
            "k8s_percentile": percentile,
            "recommended_vars_text": recommended_vars_text,
        }
