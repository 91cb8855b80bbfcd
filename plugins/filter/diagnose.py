"""Filters of the diagnose role: the chapter's failure table (Table 5.2) and more, as findings.

Pure functions over the objects' dicts as ``kubernetes.core.k8s_info`` returns them; the role
(roles/diagnose) reads the namespace, and these turn what it read into findings. Unit-tested in
tests/test_diagnose.py, one test per rule.

- ``diagnose_findings(state, stack)``: the findings, a list of dicts
  ``{id, object, symptom, evidence, cause, fix, variable}``; [] for a healthy stack.
  ``state`` holds what was read: ``deployments``, ``replicasets``, ``pods``, ``events``,
  ``services``, ``endpointslices``, ``pvcs``, ``hpas`` (lists), ``storageclasses`` and
  ``nodes`` (lists, or None when this user may not read them), ``metrics_api`` (the APIService
  ``v1beta1.metrics.k8s.io``: {} when not served, None when unreadable) and ``host_runner``
  ({reachable, error} in host mode, None when not checked).
  ``stack`` is what the project deployed, from the owning roles' variables (roles/diagnose/vars):
  the workloads with, per container, the variable names of its resources, image and probes; the
  model runner's mode, model, claim and models path; the claim and its class; the HPAs.
- ``diagnose_table(findings)``: the short human report, a list of lines.
- ``diagnose_bundle_object(obj)``: an object as the support bundle writes it: no managedFields,
  no last-applied annotation, and for a Secret its key names only (values never).
- ``diagnose_log_targets(pods)``: the container logs the bundle reads (current, and previous where
  a container restarted); ``diagnose_log_text(result)``: a k8s_log result as a log file;
  ``diagnose_node_conditions(nodes)``: the nodes' conditions and resources.

Rules (ids): node-not-ready, deployment-missing, pods-not-created, pending-insufficient-resources,
pending-unschedulable, image-not-on-node, image-pull-failed, oom-killed, probe-kills-before-load,
liveness-kills, crash-loop, readiness-passes-too-early, model-name-mismatch, model-not-persisted,
pvc-missing, pvc-no-default-class, pvc-class-missing, pvc-waiting-for-consumer, pvc-pending,
hpa-missing, hpa-target-missing, hpa-no-metrics-api, hpa-no-cpu-request, hpa-metrics-unknown,
service-missing, service-selector-matches-nothing, service-no-ready-endpoints,
host-runner-unreachable.
"""

import re

_DEFAULT_CLASS = ("storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class")
_SECRET_ENV = re.compile(r"(KEY|TOKEN|PASSWORD|SECRET|CREDENTIAL)", re.IGNORECASE)
_REDACTED = "<redacted>"


# --- helpers -------------------------------------------------------------------------------


def _name(obj):
    return ((obj or {}).get("metadata") or {}).get("name", "")


def _conditions(obj):
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def _event_time(event):
    return (event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get(
        "creationTimestamp") or "")


def _events_for(events, kind, name):
    """Events about one object, newest first."""
    mine = [e for e in events or [] if (e.get("involvedObject") or e.get("regarding") or {}).get("kind") == kind
            and (e.get("involvedObject") or e.get("regarding") or {}).get("name") == name]
    return sorted(mine, key=_event_time, reverse=True)


def _event_line(event):
    count = event.get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    return f'{event.get("type", "")} {event.get("reason", "")}: "{(event.get("message") or event.get("note") or "").strip()}"{times}'


def _selects(selector, labels):
    return bool(selector) and all((labels or {}).get(k) == v for k, v in selector.items())


def _pods_of(pods, deployment):
    """The pods of a Deployment (its selector's matchLabels), not those being deleted."""
    selector = (((deployment or {}).get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return [p for p in pods or [] if _selects(selector, (p.get("metadata") or {}).get("labels"))
            and not (p.get("metadata") or {}).get("deletionTimestamp")]


def _container_spec(pod_spec, name):
    for c in (pod_spec or {}).get("containers", []) + (pod_spec or {}).get("initContainers", []):
        if c.get("name") == name:
            return c
    return {}


def _finding(fid, obj, symptom, evidence, cause, fix, variable):
    return {"id": fid, "object": obj, "symptom": symptom, "evidence": evidence, "cause": cause, "fix": fix,
            "variable": variable}


def _var(cvars, key, suffix=""):
    """The project variable of a container's setting (``cvars[key]``), with a sub-key."""
    base = (cvars or {}).get(key)
    return f"{base}{suffix}" if base else ""


def _quantity_bytes(value):
    """A memory quantity in bytes, roughly (for the largest node's allocatable; '' when unknown)."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    m = re.match(r"^([0-9.]+)([A-Za-z]*)$", str(value or ""))
    if not m:
        return 0
    return float(m.group(1)) * units.get(m.group(2), 1)


def _quantity_cpu(value):
    text = str(value or "0")
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text or 0)


# --- rules ---------------------------------------------------------------------------------


def _node_findings(nodes):
    out = []
    for node in nodes or []:
        ready = _conditions(node).get("Ready") or {}
        if ready.get("status") != "True":
            out.append(_finding(
                "node-not-ready", f"Node/{_name(node)}", f"node {_name(node)} is NotReady",
                f'condition Ready={ready.get("status", "Unknown")} reason {ready.get("reason", "-")}: '
                f'"{ready.get("message", "")}"',
                "the node's kubelet stopped reporting (node down, out of disk or memory, or its container runtime failed); "
                "pods on it are not served and new pods are not scheduled there",
                f"bring the node back (kubectl describe node {_name(node)}; on Docker Desktop restart Kubernetes); the "
                "cluster role refuses to deploy until every node is Ready",
                "cluster_min_workers"))
    return out


def _schedule_findings(pod, pod_events, workload, nodes, pod_spec):
    """A pending pod the scheduler could not place."""
    scheduled = _conditions(pod).get("PodScheduled") or {}
    if scheduled.get("status") != "False":
        return []
    failed = [e for e in pod_events if e.get("reason") == "FailedScheduling"]
    message = (failed[0].get("message") if failed else "") or scheduled.get("message", "")
    evidence = _event_line(failed[0]) if failed else f'condition PodScheduled=False: "{message}"'
    obj = f"Pod/{_name(pod)}"
    short = [r for r in ("cpu", "memory") if f"Insufficient {r}" in message]
    if short:
        resource = short[0]
        # The container asking for the most of it is the one to make smaller.
        containers = pod_spec.get("containers", []) + [c for c in pod_spec.get("initContainers", [])
                                                       if c.get("restartPolicy") == "Always"]
        conv = _quantity_bytes if resource == "memory" else _quantity_cpu
        biggest = max(containers, key=lambda c: conv(((c.get("resources") or {}).get("requests") or {}).get(resource)),
                      default={})
        cvars = workload["containers"].get(biggest.get("name"), {})
        requested = ((biggest.get("resources") or {}).get("requests") or {}).get(resource, "?")
        largest = ""
        if nodes:
            alloc = max(nodes, key=lambda n: conv(((n.get("status") or {}).get("allocatable") or {}).get(resource)))
            largest = (f"; the largest node, {_name(alloc)}, has {resource} "
                       f"{((alloc.get('status') or {}).get('allocatable') or {}).get(resource)} allocatable")
        return [_finding(
            "pending-insufficient-resources", obj, f"pod of {workload['name']} stuck in Pending",
            evidence,
            f"no node has the {' and '.join(short)} the pod requests (container {biggest.get('name')} requests "
            f"{resource} {requested}{largest})",
            f"lower {_var(cvars, 'resources', '.requests.' + resource)} (and keep limits above it), or add nodes with "
            "more allocatable resources",
            _var(cvars, "resources", ".requests." + resource))]
    if "persistentvolumeclaim" in message.lower():
        return [_finding(
            "pending-unschedulable", obj, f"pod of {workload['name']} stuck in Pending", evidence,
            "the pod's claim is not bound (see the claim's finding)", "fix the claim first (storage_class_name)",
            "storage_class_name")]
    return [_finding(
        "pending-unschedulable", obj, f"pod of {workload['name']} stuck in Pending", evidence,
        "the scheduler found no node that fits (taints, node selectors or affinity, or unschedulable nodes)",
        "kubectl describe node; make a worker schedulable, or lower the requests", _var(
            workload["containers"].get((pod_spec.get("containers") or [{}])[0].get("name"), {}), "resources"))]


def _image_findings(pod, status, cvars, workload, image_load_var):
    waiting = (status.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason", "")
    node = (pod.get("spec") or {}).get("nodeName", "?")
    obj = f"Pod/{_name(pod)}"
    if reason == "ErrImageNeverPull":
        load = workload.get("images_loaded_by")
        return [_finding(
            "image-not-on-node", obj, f"container {status.get('name')} of {workload['name']} cannot start on node {node}",
            f'state.waiting.reason ErrImageNeverPull: "{waiting.get("message", "")}"',
            f"image {status.get('image')} is not on node {node} and the pull policy is Never (the image is in no registry)",
            (f"load the image into every node: {load}: true (the default) and re-run --tags chatbot, "
             f"or `kind load docker-image {status.get('image')} --nodes {node}`") if load else
            f"make {status.get('image')} available on node {node}, or set {_var(cvars, 'image')} to an image the node has",
            load or _var(cvars, "image"))]
    if reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        return [_finding(
            "image-pull-failed", obj, f"container {status.get('name')} of {workload['name']} cannot pull its image",
            f'state.waiting.reason {reason}: "{waiting.get("message", "")}"',
            f"node {node} cannot pull {status.get('image')} (wrong name or tag, no access to the registry, or offline)",
            f"set {_var(cvars, 'image')} to an image that exists and the node can pull", _var(cvars, "image"))]
    return []


def _termination(status):
    """The container's current or last termination."""
    state = status.get("state") or {}
    return state.get("terminated") or (status.get("lastState") or {}).get("terminated") or {}


def _restart_findings(pod, status, pod_events, cvars, workload, spec):
    obj = f"Pod/{_name(pod)}"
    term = _termination(status)
    restarts = status.get("restartCount") or 0
    waiting = ((status.get("state") or {}).get("waiting") or {}).get("reason", "")
    name = status.get("name")
    oom = [e for e in pod_events if e.get("reason") in ("OOMKilling", "OOMKilled")]
    if term.get("reason") == "OOMKilled" or oom:
        limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory", "none")
        evidence = (f"lastState.terminated.reason OOMKilled (exit code {term.get('exitCode', 137)}), "
                    f"restartCount {restarts}" if term.get("reason") == "OOMKilled" else _event_line(oom[0]))
        return [_finding(
            "oom-killed", obj, f"container {name} of {workload['name']} was OOMKilled", evidence,
            f"the container used more memory than its limit ({limit}); a model runner needs the model's size plus "
            "its context in memory",
            f"raise {_var(cvars, 'resources', '.limits.memory')} above the peak use (or use a smaller, more "
            "quantized model: ai_stack_model_name)",
            _var(cvars, "resources", ".limits.memory"))]
    kills = [e for e in pod_events if e.get("reason") == "Killing" and name in (e.get("message") or "")
             and "probe" in (e.get("message") or "")]
    unhealthy = [e for e in pod_events if e.get("reason") == "Unhealthy"]
    startup_kill = [e for e in kills if "startup probe" in e.get("message", "")]
    liveness_kill = [e for e in kills if "liveness probe" in e.get("message", "")]
    if startup_kill or (waiting == "CrashLoopBackOff" and not liveness_kill and spec.get("startupProbe") and any(
            "Startup probe failed" in (e.get("message") or "") for e in unhealthy)):
        probe = spec.get("startupProbe") or {}
        budget = (probe.get("periodSeconds") or 10) * (probe.get("failureThreshold") or 3) + (
            probe.get("initialDelaySeconds") or 0)
        evidence = _event_line((startup_kill or unhealthy)[0])
        return [_finding(
            "probe-kills-before-load", obj, f"container {name} of {workload['name']} restarts (CrashLoopBackOff), "
            f"restartCount {restarts}", evidence,
            f"the startup probe gives up before the model is loaded: its budget is periodSeconds x failureThreshold = "
            f"{budget} s, shorter than the model's pull and load time",
            f"raise {_var(cvars, 'startup_probe', '.failure_threshold')} (or .period_seconds) so the budget is the "
            "measured load time plus a buffer",
            _var(cvars, "startup_probe", ".failure_threshold") or _var(cvars, "liveness_probe", ".failure_threshold"))]
    if liveness_kill:
        has_startup = bool(spec.get("startupProbe"))
        return [_finding(
            "liveness-kills", obj, f"container {name} of {workload['name']} is restarted by its liveness probe, "
            f"restartCount {restarts}", _event_line(liveness_kill[0]),
            "the liveness probe fails while the container still works (busy or slow to answer)" if has_startup else
            "the liveness probe fires before the model is loaded: the container has no startup probe",
            f"raise {_var(cvars, 'liveness_probe', '.failure_threshold')} or .timeout_seconds" if has_startup else
            f"re-apply the project's Deployment (its startup probe, {_var(cvars, 'startup_probe')}, holds liveness "
            "back until the model is there): ansible-playbook site.yml --tags model_runner",
            _var(cvars, "liveness_probe", ".failure_threshold") if has_startup else
            (_var(cvars, "startup_probe", ".failure_threshold") or _var(cvars, "liveness_probe", ".failure_threshold")))]
    # A container that restarted once and runs Ready again is no finding (a node reboot restarts them all).
    if waiting == "CrashLoopBackOff" or (restarts > 0 and term and not status.get("ready")):
        return [_finding(
            "crash-loop", obj, f"container {name} of {workload['name']} restarts ({waiting or 'restarted'}), "
            f"restartCount {restarts}",
            f"lastState.terminated: reason {term.get('reason', '?')}, exit code {term.get('exitCode', '?')}"
            + (f', message "{term.get("message").strip()}"' if term.get("message") else ""),
            "the container exits by itself (no probe killed it, no OOM): its own error, see its previous log "
            f"(kubectl logs --previous {_name(pod)} -c {name}, or the support bundle)",
            f"fix what the log names (configuration or image: {_var(cvars, 'image')})", _var(cvars, "image"))]
    return []


def _model_runner_config_findings(deployment, stack):
    """Table 5.2 rows 4 and 5, from the Deployment's spec: readiness path and model volume."""
    runner = stack.get("model_runner") or {}
    out = []
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    container = _container_spec(spec, runner.get("container", "model-runner")) or (spec.get("containers") or [{}])[0]
    obj = f"Deployment/{_name(deployment)}"
    model = stack.get("model", "")
    want = f"/models/{model}"
    readiness = container.get("readinessProbe") or {}
    path = (readiness.get("httpGet") or {}).get("path")
    if path != want:
        out.append(_finding(
            "readiness-passes-too-early", obj, "pods are Ready but chats fail until the model is there (the runner "
            "answers 404 model not found, the backend 502; the chapter says 503)",
            f"readinessProbe.httpGet.path: {path}" if path else "the model-runner container has no HTTP readinessProbe",
            f"the readiness check passes before the model {model} is there ({path or 'no probe'} answers 200 as soon "
            f"as the server runs; /v1/models answers 200 with an empty list); only {want} proves it (404 until present)",
            "re-apply the project's Deployment, whose readiness and startup probes use GET /models/<model> "
            "(ansible-playbook site.yml --tags model_runner; a Deployment edited outside the project is re-created); "
            "the path follows ai_stack_model_name",
            "ai_stack_model_name"))
    mounts = {m.get("mountPath"): m.get("name") for m in container.get("volumeMounts") or []}
    models_path = runner.get("models_path", "/models")
    volume_name = mounts.get(models_path)
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    claim = ((volumes.get(volume_name) or {}).get("persistentVolumeClaim") or {}).get("claimName")
    if not claim:
        kind = next((k for k in (volumes.get(volume_name) or {}) if k != "name"), None)
        out.append(_finding(
            "model-not-persisted", obj, "the model is downloaded again on every restart",
            f"{models_path} is mounted from a {kind} volume" if volume_name else f"nothing is mounted at {models_path}",
            "no PersistentVolumeClaim holds the model files, so each new container starts without them",
            f"mount the storage role's claim: keep model_runner_pvc_name = storage_pvc_name ({runner.get('pvc')}) and "
            "re-run --tags storage,model_runner",
            "model_runner_pvc_name"))
    elif runner.get("pvc") and claim != runner.get("pvc"):
        out.append(_finding(
            "model-not-persisted", obj, "the model runner mounts another claim than the storage role's",
            f"volume {volume_name} mounts claim {claim}",
            f"the storage role's claim is {runner.get('pvc')}; the other claim may not persist or may not exist",
            "set model_runner_pvc_name to storage_pvc_name (its default) and re-run --tags model_runner",
            "model_runner_pvc_name"))
    return out


def _model_name_findings(deployments, stack):
    backend = stack.get("backend") or {}
    dep = deployments.get(backend.get("name"))
    if not dep or not stack.get("model"):
        return []
    spec = ((dep.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in spec.get("containers") or []:
        for env in container.get("env") or []:
            if env.get("name") == backend.get("model_env", "LLM_MODEL") and "value" in env \
                    and env.get("value") != stack["model"]:
                return [_finding(
                    "model-name-mismatch", f"Deployment/{_name(dep)}",
                    "the backend asks for a model the runner does not serve (chat answers an error)",
                    f"env {env['name']}={env.get('value')}, the runner's model is {stack['model']}",
                    "two model names (the chapter's files name three): the runner loads one, the backend requests another",
                    "set one model, ai_stack_model_name, and leave chatbot_llm_model at its default (it follows)",
                    "chatbot_llm_model")]
    return []


def _workload_findings(state, stack):
    out = []
    deployments = {_name(d): d for d in state.get("deployments") or []}
    events = state.get("events") or []
    nodes = state.get("nodes")
    for workload in stack.get("workloads") or []:
        if not workload.get("enabled", True):
            continue
        dep = deployments.get(workload["name"])
        if dep is None:
            out.append(_finding(
                "deployment-missing", f"Deployment/{workload['name']}", f"{workload['name']} is not deployed",
                f"no Deployment {workload['name']} in namespace {stack.get('namespace')}",
                "the stack was not deployed here, or under other names", "ansible-playbook site.yml (check "
                f"ai_stack_namespace and {workload.get('name_var', 'the name variables')})",
                workload.get("name_var", "ai_stack_namespace")))
            continue
        if workload.get("role") == "model_runner":
            out += _model_runner_config_findings(dep, stack)
        for rs in state.get("replicasets") or []:
            owners = [o.get("name") for o in (rs.get("metadata") or {}).get("ownerReferences") or []]
            failure = _conditions(rs).get("ReplicaFailure") or {}
            if workload["name"] in owners and failure.get("status") == "True":
                out.append(_finding(
                    "pods-not-created", f"ReplicaSet/{_name(rs)}", f"no pods are created for {workload['name']}",
                    f'condition ReplicaFailure reason {failure.get("reason")}: "{failure.get("message", "")}"',
                    "the API server refuses the pods (a ResourceQuota, a LimitRange, Pod Security admission)",
                    "fit the pods into the namespace's quota or policy (the resources variables), or raise the quota",
                    _var(next(iter(workload["containers"].values()), {}), "resources")))
        for pod in _pods_of(state.get("pods"), dep):
            pod_events = _events_for(events, "Pod", _name(pod))
            pod_spec = pod.get("spec") or {}
            if (pod.get("status") or {}).get("phase") == "Pending" and not pod_spec.get("nodeName"):
                out += _schedule_findings(pod, pod_events, workload, nodes, pod_spec)
                continue
            statuses = ((pod.get("status") or {}).get("initContainerStatuses") or []) + (
                (pod.get("status") or {}).get("containerStatuses") or [])
            for status in statuses:
                cvars = workload["containers"].get(status.get("name"), {})
                found = _image_findings(pod, status, cvars, workload, stack.get("image_load_var"))
                found = found or _restart_findings(pod, status, pod_events, cvars, workload,
                                                   _container_spec(pod_spec, status.get("name")))
                out += found
    out += _model_name_findings(deployments, stack)
    return out


def _pvc_findings(state, stack):
    pvc_cfg = stack.get("pvc") or {}
    if not pvc_cfg.get("enabled", True) or not pvc_cfg.get("name"):
        return []
    claims = {_name(c): c for c in state.get("pvcs") or []}
    claim = claims.get(pvc_cfg["name"])
    obj = f"PersistentVolumeClaim/{pvc_cfg['name']}"
    if claim is None:
        return [_finding(
            "pvc-missing", obj, "the model volume's claim does not exist",
            f"no PersistentVolumeClaim {pvc_cfg['name']} in namespace {stack.get('namespace')}",
            "the storage role did not run here (or storage_state is absent): the runner's pod cannot start",
            "ansible-playbook site.yml --tags storage", "storage_state")]
    if (claim.get("status") or {}).get("phase") != "Pending":
        return []
    events = _events_for(state.get("events"), "PersistentVolumeClaim", pvc_cfg["name"])
    evidence = _event_line(events[0]) if events else "status.phase: Pending"
    class_name = (claim.get("spec") or {}).get("storageClassName")
    classes = state.get("storageclasses")
    names = sorted(_name(c) for c in classes or [])
    listed = f" (classes here: {', '.join(names) or 'none'})" if classes is not None else ""
    defaults = [c for c in classes or [] if any(
        ((c.get("metadata") or {}).get("annotations") or {}).get(a) == "true" for a in _DEFAULT_CLASS)]
    if not class_name:
        if classes is None and not any("no storage class is set" in (e.get("message") or "") for e in events):
            return [_finding("pvc-pending", obj, "the model volume's claim stays Pending", evidence,
                             "no class is set and this user may not read StorageClasses to tell why",
                             "set storage_class_name to a class of the cluster", "storage_class_name")]
        if not defaults:
            return [_finding(
                "pvc-no-default-class", obj, "the model volume's claim stays Pending", evidence,
                f"the claim names no class and the cluster has no default StorageClass{listed}",
                "set storage_class_name to one of the cluster's classes (the claim is re-created: a class cannot "
                "change on an existing claim), or mark a class default", "storage_class_name")]
        class_name = _name(defaults[0])
    known = {_name(c): c for c in classes or []}
    if (classes is not None and class_name not in known) or any(
            "not found" in (e.get("message") or "") and "storageclass" in (e.get("message") or "") for e in events):
        return [_finding(
            "pvc-class-missing", obj, "the model volume's claim stays Pending", evidence,
            f"StorageClass {class_name} does not exist{listed}",
            "set storage_class_name to an existing class (a class cannot change on an existing claim: delete it, "
            "or --tags storage -e storage_state=absent, then deploy again)", "storage_class_name")]
    mode = ((known.get(class_name) or {}).get("volumeBindingMode")) or ""
    consumers = [p for p in state.get("pods") or [] if any(
        ((v.get("persistentVolumeClaim") or {}).get("claimName") == pvc_cfg["name"])
        for v in (p.get("spec") or {}).get("volumes") or [])]
    scheduled = [p for p in consumers if (p.get("spec") or {}).get("nodeName")]
    waiting = mode == "WaitForFirstConsumer" or any(e.get("reason") == "WaitForFirstConsumer" for e in events)
    if waiting and not scheduled:
        return [_finding(
            "pvc-waiting-for-consumer", obj, "the model volume's claim stays Pending", evidence,
            f"class {class_name} binds on first use (WaitForFirstConsumer) and no pod using the claim is scheduled"
            + (": its pods are Pending (see their findings)" if consumers else ": no pod uses it"),
            "fix the model runner's pods first (a Pending pod's finding names the variable); with "
            "model_runner_mode host nothing mounts the claim (storage_state: absent drops it)",
            "model_runner_mode" if not consumers else "model_runner_resources")]
    return [_finding(
        "pvc-pending", obj, "the model volume's claim stays Pending", evidence,
        f"class {class_name} has not provisioned a volume (its provisioner failed or is not running)",
        "check the provisioner of the class, or set storage_class_name to a class that provisions",
        "storage_class_name")]


def _hpa_findings(state, stack):
    out = []
    hpas = {_name(h): h for h in state.get("hpas") or []}
    deployments = {_name(d): d for d in state.get("deployments") or []}
    workloads = {w["name"]: w for w in stack.get("workloads") or []}
    metrics_api = state.get("metrics_api")
    for cfg in stack.get("hpas") or []:
        if not cfg.get("enabled", True):
            continue
        obj = f"HorizontalPodAutoscaler/{cfg['name']}"
        hpa = hpas.get(cfg["name"])
        if hpa is None:
            out.append(_finding("hpa-missing", obj, f"{cfg['target']} does not scale",
                                f"no HorizontalPodAutoscaler {cfg['name']}", "the autoscaling role did not run here",
                                "ansible-playbook site.yml --tags autoscaling", "autoscaling_state"))
            continue
        conds = _conditions(hpa)
        able, active = conds.get("AbleToScale") or {}, conds.get("ScalingActive") or {}
        target = ((hpa.get("spec") or {}).get("scaleTargetRef") or {}).get("name", cfg["target"])
        if able.get("status") == "False" or target not in deployments:
            out.append(_finding(
                "hpa-target-missing", obj, f"the HPA cannot scale {target}",
                f'condition AbleToScale=False reason {able.get("reason")}: "{able.get("message", "")}"'
                if able.get("status") == "False" else f"no Deployment {target}",
                "the HPA's target does not exist", f"set {cfg.get('target_var')} to the Deployment to scale",
                cfg.get("target_var", "")))
            continue
        # A target container without a CPU request: utilisation has no denominator.
        dep_spec = ((deployments[target].get("spec") or {}).get("template") or {}).get("spec") or {}
        no_request = [c.get("name") for c in dep_spec.get("containers") or []
                      if not ((c.get("resources") or {}).get("requests") or {}).get("cpu")]
        message = active.get("message", "")
        evidence = f'condition ScalingActive=False reason {active.get("reason")}: "{message}"' \
            if active.get("status") == "False" else ""
        if no_request or "missing request for cpu" in message:
            name = no_request[0] if no_request else (re.search(r"in container (\S+)", message) or [None, "?"])[1]
            cvars = (workloads.get(target) or {}).get("containers", {}).get(name, {})
            out.append(_finding(
                "hpa-no-cpu-request", obj, f"the HPA shows <unknown> CPU for {target}",
                evidence or f"container {name} of Deployment {target} has no resources.requests.cpu",
                "CPU utilisation is usage divided by the request; a container without a CPU request has none",
                f"set {_var(cvars, 'resources', '.requests.cpu')} (the autoscaling role refuses a target without one)",
                _var(cvars, "resources", ".requests.cpu")))
            continue
        if metrics_api is not None and not _metrics_api_available(metrics_api):
            out.append(_finding(
                "hpa-no-metrics-api", obj, f"the HPA shows <unknown> CPU for {target}",
                evidence or ("APIService v1beta1.metrics.k8s.io is not served" if not metrics_api else
                             f'APIService v1beta1.metrics.k8s.io Available=False: '
                             f'"{(_conditions(metrics_api).get("Available") or {}).get("message", "")}"'),
                "the metrics API (metrics-server) is not available, so the HPA has no CPU usage to compare",
                "set autoscaling_metrics_server_enabled: true (the default) and re-run --tags autoscaling, or fix "
                "the cluster's metrics-server", "autoscaling_metrics_server_enabled"))
            continue
        if active.get("status") == "False":
            out.append(_finding(
                "hpa-metrics-unknown", obj, f"the HPA shows <unknown> CPU for {target}", evidence,
                "the HPA controller cannot read the target's CPU usage (metrics API not serving these pods yet, or "
                "the pods are not running)",
                "wait a minute after the pods start; if it stays, check metrics-server "
                "(kubectl top pods) and autoscaling_metrics_server_enabled", "autoscaling_metrics_server_enabled"))
    return out


def _metrics_api_available(api):
    return (_conditions(api).get("Available") or {}).get("status") == "True"


def _service_findings(state, stack):
    out = []
    services = {_name(s): s for s in state.get("services") or []}
    pods = [p for p in state.get("pods") or [] if not (p.get("metadata") or {}).get("deletionTimestamp")]
    for cfg in stack.get("services") or []:
        if not cfg.get("enabled", True):
            continue
        obj = f"Service/{cfg['name']}"
        svc = services.get(cfg["name"])
        if svc is None:
            out.append(_finding("service-missing", obj, f"nothing answers at {cfg['name']}",
                                f"no Service {cfg['name']} in namespace {stack.get('namespace')}",
                                "the owning role did not run here", "ansible-playbook site.yml",
                                cfg.get("name_var", "")))
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        if not selector:
            continue
        matched = [p for p in pods if _selects(selector, (p.get("metadata") or {}).get("labels"))]
        sel_text = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
        if not matched:
            out.append(_finding(
                "service-selector-matches-nothing", obj, f"connections to {cfg['name']} are refused or hang",
                f"spec.selector {sel_text} matches none of the namespace's {len(pods)} pods",
                "the Service selects labels its pods do not carry (edited by hand, or pods and Service from different "
                "names)",
                f"re-apply both from one name ({cfg.get('name_var')}): ansible-playbook site.yml --tags {cfg.get('tag')}",
                cfg.get("name_var", "")))
            continue
        slices = [s for s in state.get("endpointslices") or []
                  if ((s.get("metadata") or {}).get("labels") or {}).get("kubernetes.io/service-name") == cfg["name"]]
        endpoints = [e for s in slices for e in s.get("endpoints") or []]
        ready = [e for e in endpoints if (e.get("conditions") or {}).get("ready")]
        if not ready:
            out.append(_finding(
                "service-no-ready-endpoints", obj, f"{cfg['name']} has no ready endpoint: requests fail",
                f"{len(matched)} pod(s) match selector {sel_text}; EndpointSlices list {len(endpoints)} endpoint(s), "
                "0 ready",
                "none of its pods is Ready (their readiness probes fail, or they are not running: see their findings)",
                f"fix the pods' findings; if they run but stay unready, check {cfg.get('readiness_var')}",
                cfg.get("readiness_var", "")))
    return out


def _host_runner_findings(state, stack):
    runner = stack.get("model_runner") or {}
    host = state.get("host_runner")
    if runner.get("mode") != "host" or not host or host.get("reachable", True):
        return []
    return [_finding(
        "host-runner-unreachable", f"Service/{runner.get('name')}",
        "model_runner_mode is host and the host's Model Runner does not answer",
        f"GET {host.get('url', '')}: {host.get('error', 'no answer')}",
        f"Docker Desktop's Model Runner is not running or not listening on TCP port {runner.get('port')} (the pods "
        f"reach it as {runner.get('host_address')}:{runner.get('port')})",
        f"enable it (docker desktop enable model-runner --tcp {runner.get('port')}) and pull the model, or set "
        "model_runner_mode: cluster", "model_runner_mode")]


def diagnose_findings(state, stack):
    """Every finding for what was read (``state``) and what the project deployed (``stack``)."""
    state = state or {}
    stack = stack or {}
    found = (_node_findings(state.get("nodes")) + _workload_findings(state, stack) + _pvc_findings(state, stack)
             + _hpa_findings(state, stack) + _service_findings(state, stack) + _host_runner_findings(state, stack))
    # One finding per cause and workload: three Pending replicas of one Deployment are one problem.
    out, seen = [], {}
    for f in found:
        key = (f["id"], f["symptom"], f["variable"])
        if key in seen:
            seen[key]["also"] = seen[key].get("also", []) + [f["object"]]
            continue
        seen[key] = f
        out.append(f)
    return out


def diagnose_table(findings, notes=None):
    """The human report: one table row per finding, then each finding's evidence, cause and fix."""
    lines = [f"note: {n}" for n in notes or []]
    if not findings:
        return lines + ["no findings"]
    rows = [(str(i), f["id"], f["object"], f["variable"] or "-") for i, f in enumerate(findings, 1)]
    head = ("#", "finding", "object", "variable to change")
    widths = [max(len(r[c]) for r in rows + [head]) for c in range(4)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines += [fmt.format(*head).rstrip()] + [fmt.format(*r).rstrip() for r in rows]
    for i, f in enumerate(findings, 1):
        also = f" (also {', '.join(f['also'])})" if f.get("also") else ""
        lines += [f"{i}. {f['object']}{also}: {f['symptom']}", f"   evidence: {f['evidence']}",
                  f"   cause: {f['cause']}", f"   fix: {f['fix']}"]
    return lines


def diagnose_bundle_object(obj):
    """An object for the support bundle: no managedFields or last-applied annotation; a Secret's
    values replaced (its key names stay); env values whose names look secret redacted."""
    out = dict(obj or {})
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    if meta.get("annotations"):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items()
                               if k != "kubectl.kubernetes.io/last-applied-configuration"}
    out["metadata"] = meta
    if out.get("kind") == "Secret":
        keys = sorted(set((out.get("data") or {})) | set(out.get("stringData") or {}))
        out.pop("stringData", None)
        out["data"] = {k: _REDACTED for k in keys}
        return out
    return _redact_env(out)


def _redact_env(value):
    if isinstance(value, dict):
        if "name" in value and "value" in value and isinstance(value.get("value"), str) \
                and _SECRET_ENV.search(str(value.get("name"))) and set(value) <= {"name", "value"}:
            return {"name": value["name"], "value": _REDACTED}
        return {k: _redact_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_env(v) for v in value]
    return value


def diagnose_log_targets(pods):
    """The logs the bundle reads: every container of every pod (init containers and sidecars too),
    and its previous instance where it restarted. Each {pod, container, previous, file}."""
    out = []
    for pod in pods or []:
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            base = f"{_name(pod)}_{cs.get('name')}"
            out.append({"pod": _name(pod), "container": cs.get("name"), "previous": False, "file": f"{base}.log"})
            if (cs.get("restartCount") or 0) > 0:
                out.append({"pod": _name(pod), "container": cs.get("name"), "previous": True,
                            "file": f"{base}.previous.log"})
    return out


def diagnose_log_text(result):
    """A k8s_log result as the bundle's log file: its lines, or "no log: <the API server's reason>"
    (a container that never started, as every container on a simulated node)."""
    result = result or {}
    if result.get("log_lines") is not None and not result.get("failed"):
        return "\n".join(result["log_lines"]) + "\n"
    msg = str(result.get("msg") or "")
    m = re.search(r'"message":"((?:[^"\\]|\\.)*)"', msg)
    return f"no log: {m.group(1) if m else msg.splitlines()[0] if msg else 'unknown'}\n"


def diagnose_node_conditions(nodes):
    """Each node's name, conditions, allocatable and capacity (the bundle's nodes.yaml)."""
    return [{"name": _name(n), "conditions": (n.get("status") or {}).get("conditions") or [],
             "allocatable": (n.get("status") or {}).get("allocatable") or {},
             "capacity": (n.get("status") or {}).get("capacity") or {},
             "unschedulable": bool((n.get("spec") or {}).get("unschedulable")),
             "taints": (n.get("spec") or {}).get("taints") or []} for n in nodes or []]


class FilterModule:
    """Filters of the diagnose role."""

    def filters(self):
        return {
            "diagnose_findings": diagnose_findings,
            "diagnose_table": diagnose_table,
            "diagnose_bundle_object": diagnose_bundle_object,
            "diagnose_log_targets": diagnose_log_targets,
            "diagnose_log_text": diagnose_log_text,
            "diagnose_node_conditions": diagnose_node_conditions,
        }
