"""The roles' manifests, rendered by Ansible itself (tests/render.yml), checked offline.

Every test runs for both scenarios: the defaults and tests/fixtures/nondefault_vars.yml
(other namespace, model, sizes, replicas, ports, images, host mode, labels, annotations).
"""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from ai_stack_testlib import (
    ROLES_DIR,
    all_containers,
    container,
    env_of,
    flat_tasks,
    load_yaml,
    pod_spec,
    render,
    render_vars,
    rendered_roles,
)

K8S_VERSION = "1.34.0"


def model_runner_deployment(r):
    return r.one("Deployment", r.expected("model_runner_name"))


def model_runner_service(r):
    return r.one("Service", r.expected("model_runner_name"))


def backend(r):
    return r.one("Deployment", r.expected("chatbot_backend_name"))


def frontend(r):
    return r.one("Deployment", r.expected("chatbot_frontend_name"))


def model_name(r):
    """The one model name of the scenario (ai_stack_model_name feeds every role)."""
    return r.expected("ai_stack_model_name")


def namespace_name(r):
    return r.expected("ai_stack_namespace")


# --- coverage and schema ------------------------------------------------------


# Roles with templates that tests/render.yml does not render (yet): role -> why.
RENDER_EXCLUDED_ROLES = {
    role: "ML ecosystem role, added while this suite was written; its templates include custom resources "
    "(no schema in kubernetes-validate): add it to render_roles in tests/render.yml once it settles"
    for role in ("kserve", "kubeflow", "kuberay", "mlflow")
}


def test_every_template_is_rendered(rendered):
    """Each roles/*/templates/*.j2 is in the output (a new template cannot escape these tests)."""
    rendered_templates = {re.sub(r"(-\d+)?\.yaml$", "", key) for key in rendered.files}
    on_disk = {
        f"{p.parent.parent.name}/{p.name.removesuffix('.yaml.j2')}"
        for p in ROLES_DIR.glob("*/templates/*.j2")
        if p.parent.parent.name not in RENDER_EXCLUDED_ROLES
    }
    assert {"namespace", "storage", "config", "model_runner", "chatbot"} <= set(rendered_roles())
    assert not set(rendered_roles()) & set(RENDER_EXCLUDED_ROLES)
    assert on_disk, "no templates found"
    assert on_disk <= rendered_templates, (
        f"not rendered by tests/render.yml: {sorted(on_disk - rendered_templates)} "
        "(add the role to render_roles there, or a loop to render_loops)"
    )
    # The chatbot templates render one document per component (applied in one call).
    for kind in ("deployment", "service"):
        assert len([d for d in yaml.safe_load_all(rendered.files[f"chatbot/{kind}.yaml"]) if d]) == 2, kind


def test_templates_applied_with_from_yaml_render_one_document(rendered):
    """A task that applies `lookup('template', X) | from_yaml` needs X to be exactly one YAML document."""
    pattern = re.compile(
        r"lookup\('ansible\.builtin\.template', '([^']+)'\)\s*\|\s*(?:ansible\.builtin\.)?(from_yaml(?:_all)?)\b"
    )
    single = set()
    for tasks in [*ROLES_DIR.glob("*/tasks/*.yml"), *ROLES_DIR.glob("*/vars/*.yml")]:
        for template, parser in pattern.findall(tasks.read_text()):
            if parser == "from_yaml":
                single.add(f"{tasks.parent.parent.name}/{template.removesuffix('.yaml.j2')}")
    assert single, "found no task applying a template with from_yaml"
    for key in rendered.files:
        if re.sub(r"(-\d+)?\.yaml$", "", key) in single:
            docs = [d for d in yaml.safe_load_all(rendered.files[key]) if d is not None]
            assert len(docs) == 1, f"{key} renders {len(docs)} documents but is applied with from_yaml"


def test_every_object_validates_against_kubernetes_schema(rendered):
    assert len(rendered.objects) >= 12
    errors = []
    for key, obj in rendered.sources:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{key} {obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_namespaced_objects_land_in_the_stack_namespace(rendered):
    ns = namespace_name(rendered)
    assert rendered.one("Namespace")["metadata"]["name"] == ns
    for key, obj in rendered.sources:
        if key.startswith(("namespace/", "autoscaling/metrics-server")):
            continue
        assert obj["metadata"].get("namespace") == ns, f"{key} {obj['kind']} is not in {ns}"


# --- labels, selectors, ports -----------------------------------------------


def test_deployment_selector_is_subset_of_pod_labels(objects):
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) >= 3
    for d in deployments:
        match = d["spec"]["selector"]["matchLabels"]
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert match, f"{d['metadata']['name']} has an empty selector"
        assert match.items() <= labels.items(), f"{d['metadata']['name']}: {match} not in {labels}"


def test_services_select_the_pods_of_the_deployment_they_front(rendered):
    services = [s for s in rendered.of_kind("Service") if s["spec"].get("type") != "ExternalName"]
    assert len(services) >= 2
    for svc in services:
        ns = svc["metadata"]["namespace"]
        selector = svc["spec"]["selector"]
        assert selector, f"Service {svc['metadata']['name']} has no selector"
        selected = [
            d
            for d in rendered.of_kind("Deployment")
            if d["metadata"]["namespace"] == ns
            and selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        names = [d["metadata"]["name"] for d in selected]
        assert names == [svc["metadata"]["name"]], f"Service {svc['metadata']['name']} selects {names}"
        ports = {
            (p["name"], p["containerPort"]) for c in pod_spec(selected[0])["containers"] for p in c.get("ports", [])
        }
        for port in svc["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(
                target in pair for pair in ports
            ), f"{svc['metadata']['name']}: targetPort {target} not in {ports}"


def test_probe_ports_refer_to_declared_container_ports(rendered):
    probes_seen = 0
    for d in rendered.of_kind("Deployment"):
        for c in all_containers(d):
            declared = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe not in c:
                    continue
                handler = c[probe].get("httpGet") or c[probe].get("tcpSocket")
                assert handler, f"{d['metadata']['name']}/{c['name']} {probe} has no httpGet/tcpSocket"
                probes_seen += 1
                assert (
                    handler["port"] in declared
                ), f"{d['metadata']['name']}/{c['name']} {probe} port {handler['port']}"
    assert probes_seen >= 7


# --- model runner ---------------------------------------------------------------


def test_model_runner_probes(rendered):
    runner = container(model_runner_deployment(rendered), "model-runner")
    expected = f"/models/{model_name(rendered)}"
    assert runner["readinessProbe"]["httpGet"]["path"] == expected
    assert runner["startupProbe"]["httpGet"]["path"] == expected
    for probe in ("readinessProbe", "startupProbe", "livenessProbe"):
        assert runner[probe]["httpGet"]["path"] != "/v1/models"
    assert runner["livenessProbe"]["httpGet"]["path"] != "/health"


def test_model_runner_env_port_and_config(rendered):
    runner = container(model_runner_deployment(rendered), "model-runner")
    service_port = model_runner_service(rendered)["spec"]["ports"][0]["port"]
    assert env_of(runner)["MODEL_RUNNER_PORT"] == str(service_port)
    assert [p["containerPort"] for p in runner["ports"]] == [service_port]
    configmap = rendered.one("ConfigMap")["metadata"]["name"]
    assert runner["envFrom"] == [{"configMapRef": {"name": configmap}}]
    if rendered.scenario == "default":
        assert configmap == "dmr-config"


def test_model_volume_fsgroup_and_no_chmod(rendered):
    deployment = model_runner_deployment(rendered)
    spec = pod_spec(deployment)
    runner = container(deployment, "model-runner")
    pvc = rendered.one("PersistentVolumeClaim")
    mounts = {m["name"]: m["mountPath"] for m in runner["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    claimed = [
        n for n, v in volumes.items() if v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"]
    ]
    assert len(claimed) == 1 and mounts.get(claimed[0]) == "/models"
    assert env_of(runner)["MODELS_PATH"] == "/models"
    assert isinstance(spec["securityContext"].get("fsGroup"), int)
    for init in spec.get("initContainers", []):
        # Only native sidecars: nothing runs once as root to chmod the volume.
        assert init.get("restartPolicy") == "Always", f"init container {init['name']} is not a sidecar"
        assert "chmod" not in json.dumps(init), f"init container {init['name']} runs chmod"


def test_images_are_pinned(rendered):
    images = {c["image"] for d in rendered.objects if d["kind"] in ("Deployment", "Job") for c in all_containers(d)}
    assert len(images) >= 5
    for image in images:
        assert re.search(r"(:[\w][\w.-]*|@sha256:[0-9a-f]{64})$", image.split("/")[-1]), f"{image} has no tag"
        assert not image.endswith(":latest"), image
    runner = model_runner_deployment(rendered)
    assert container(runner, "model-runner")["image"] == rendered.expected("model_runner_image")
    assert container(runner, "model-prepull")["image"] == rendered.expected("model_runner_prepull_image")


def test_requests_on_every_container(rendered):
    for d in rendered.of_kind("Deployment") + rendered.of_kind("Job"):
        for c in all_containers(d):
            requests = (c.get("resources") or {}).get("requests") or {}
            assert {"cpu", "memory"} <= set(requests), f"{d['metadata']['name']}/{c['name']} requests {requests}"


def test_host_mode_renders_externalname_service(rendered):
    svc = model_runner_service(rendered)
    assert svc["metadata"]["name"] == "docker-model-runner"
    if rendered.expected("model_runner_mode") == "host":
        assert svc["spec"]["type"] == "ExternalName"
        assert svc["spec"]["externalName"] == "host.docker.internal"
        assert [p["port"] for p in svc["spec"]["ports"]] == [12434]
        assert "selector" not in svc["spec"]
    else:
        assert svc["spec"]["type"] == "ClusterIP"
        assert svc["spec"]["selector"] == {"app": "docker-model-runner"}


def test_scenarios_cover_both_modes(renders):
    modes = {r.expected("model_runner_mode") for r in renders.values()}
    assert modes == {"cluster", "host"}


# --- chatbot -------------------------------------------------------------------


def test_chatbot_images_are_never_pulled(rendered):
    for d in (backend(rendered), frontend(rendered)):
        for c in all_containers(d):
            assert c["imagePullPolicy"] == "Never", d["metadata"]["name"]


def test_backend_env_and_probes(rendered):
    d = backend(rendered)
    c = container(d, "backend")
    env = env_of(c)
    service = rendered.one("Service", d["metadata"]["name"])
    assert env["PORT"] == str(service["spec"]["ports"][0]["port"]) == str(c["ports"][0]["containerPort"])
    assert env["LLM_MODEL"] == model_name(rendered)
    assert env["ANTHROPIC_API_KEY"] == {"secretKeyRef": {"name": "app-secrets", "key": "ANTHROPIC_API_KEY"}}
    secret = rendered.one("Secret", "app-secrets")
    assert "ANTHROPIC_API_KEY" in secret["data"]
    # LLM_URL reaches the model runner's Service on its port, in either mode.
    url = urlsplit(env["LLM_URL"])
    runner_svc = model_runner_service(rendered)
    assert url.scheme == "http"
    assert url.hostname == runner_svc["metadata"]["name"]
    assert url.port == runner_svc["spec"]["ports"][0]["port"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"


def test_one_model_name_feeds_every_consumer(rendered):
    expected = model_name(rendered)
    runner = model_runner_deployment(rendered)
    seen = {
        "ConfigMap MODEL_NAME": rendered.one("ConfigMap")["data"]["MODEL_NAME"],
        "sidecar MODEL_NAME": env_of(container(runner, "model-prepull"))["MODEL_NAME"],
        "readiness path": container(runner, "model-runner")["readinessProbe"]["httpGet"]["path"].removeprefix(
            "/models/"
        ),
        "backend LLM_MODEL": env_of(container(backend(rendered), "backend"))["LLM_MODEL"],
    }
    assert set(seen.values()) == {expected}, seen


def test_scenarios_use_different_model_names(renders):
    assert len({model_name(r) for r in renders.values()}) == 2


# --- storage and namespace ---------------------------------------------------------


def test_pvc(rendered):
    pvc = rendered.one("PersistentVolumeClaim")
    if rendered.scenario == "default":
        assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
        assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert "storageClassName" not in pvc["spec"]
    else:
        assert pvc["spec"]["resources"]["requests"]["storage"] == rendered.expected("storage_size")
        assert pvc["spec"]["accessModes"] == rendered.expected("storage_access_modes")
        assert pvc["spec"]["storageClassName"] == rendered.expected("storage_class_name")


def test_namespace_pod_security_labels(rendered):
    labels = rendered.one("Namespace")["metadata"]["labels"]
    levels = rendered.expected("namespace_pod_security")
    assert labels["pod-security.kubernetes.io/enforce"] == levels["enforce"]
    for mode in ("enforce", "audit", "warn"):
        assert labels[f"pod-security.kubernetes.io/{mode}"] in ("privileged", "baseline", "restricted")
    for key, value in rendered.overrides.get("namespace_extra_labels", {}).items():
        assert labels[key] == value


def test_extra_labels_and_annotations_reach_the_pods(renders):
    r = renders["nondefault"]
    for d in (model_runner_deployment(r), backend(r), frontend(r)):
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert labels["team"] == "ml-platform" and labels["cost-center"] == "4711", d["metadata"]["name"]
    runner_annotations = model_runner_deployment(r)["spec"]["template"]["metadata"]["annotations"]
    assert runner_annotations["prometheus.io/scrape"] == "true"
    assert "checksum/config" in runner_annotations
    assert backend(r)["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == "ml-platform"
    # (the backend's count belongs to its HPA: test_deployments_an_hpa_scales_omit_replicas)
    assert frontend(r)["spec"]["replicas"] == 2


# --- pre-pull sidecar script -----------------------------------------------------


def prepull_script(rendered):
    sidecar = container(model_runner_deployment(rendered), "model-prepull")
    assert sidecar["command"] == ["/bin/sh", "-c"]
    assert len(sidecar["args"]) == 1
    return sidecar["args"][0], env_of(sidecar)


def test_prepull_json_body_is_valid_json(rendered):
    """Run the script's body construction with /bin/sh and parse what it builds."""
    script, env = prepull_script(rendered)
    body_lines = [line.strip() for line in script.splitlines() if "printf" in line and "from" in line]
    assert len(body_lines) == 1, f"expected one printf building the JSON body:\n{script}"
    assignment = re.match(r"^(\w+)=\$\(.*\)$", body_lines[0])
    assert assignment, body_lines[0]
    var = assignment.group(1)
    # The curl that creates the model sends exactly that variable.
    assert re.search(rf'-d "\$\{{?{var}\}}?"', script), "the POST does not send the printf-built body"
    out = subprocess.run(
        ["/bin/sh", "-c", f'set -u\n{body_lines[0]}\nprintf "%s" "${{{var}}}"'],
        env={"PATH": os.environ["PATH"], "MODEL_NAME": env["MODEL_NAME"]},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert json.loads(out) == {"from": model_name(rendered)}


def test_prepull_script_runs_and_posts_json(rendered, tmp_path):
    """Run the whole sidecar script with stand-in curl and sleep: it pulls once, with a JSON body, then idles."""
    script, env = prepull_script(rendered)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "curl.jsonl"
    (bindir / "curl").write_text(textwrap.dedent(f"""\
            #!{sys.executable}
            import json, os, sys
            args = sys.argv[1:]
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(args) + "\\n")
            url = args[-1]
            pulled = {str(tmp_path / "pulled")!r}
            if url.endswith("/models/create"):
                try:
                    json.loads(args[args.index("-d") + 1])
                except ValueError:
                    sys.exit(22)  # the server answers 400 Bad Request; curl -f fails
                open(pulled, "w").close()
                sys.exit(0)
            if "/models/" in url:
                sys.exit(0 if os.path.exists(pulled) else 22)
            sys.exit(0)
            """))
    # sleep 3600 (the idle loop) stands for the pod being stopped: TERM to the script.
    # Any other sleep is a retry; a script still retrying after 5 is stopped (it would loop forever).
    (bindir / "sleep").write_text(textwrap.dedent(f"""\
            #!{sys.executable}
            import os, signal, sys
            if sys.argv[1:] == ["3600"]:
                os.kill(os.getppid(), signal.SIGTERM)
            else:
                count = {str(tmp_path / "retries")!r}
                with open(count, "a") as f:
                    f.write("x")
                if os.path.getsize(count) > 5:
                    os.kill(os.getppid(), signal.SIGKILL)
            """))
    for tool in ("curl", "sleep"):
        (bindir / tool).chmod(0o755)
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        env={"PATH": f"{bindir}:{os.environ['PATH']}", **{k: str(v) for k, v in env.items()}},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert result.returncode == 0, f"rc={result.returncode}\n{result.stdout}{result.stderr}\ncurl calls: {calls}"
    posts = [c for c in calls if c[-1].endswith("/models/create")]
    assert len(posts) == 1, calls
    port = env["MODEL_RUNNER_PORT"]
    assert posts[0][-1] == f"http://localhost:{port}/models/create"
    assert json.loads(posts[0][posts[0].index("-d") + 1]) == {"from": model_name(rendered)}
    assert calls[-1][-1] == f"http://localhost:{port}/models/{model_name(rendered)}"
    # It idled until the TERM (stand-in sleep 3600) and then ended through its trap with 0.
    assert f"Model {model_name(rendered)} is present" in result.stdout


# --- checksums -------------------------------------------------------------------


def pod_annotations(deployment):
    return deployment["spec"]["template"]["metadata"].get("annotations") or {}


SECRET_VERSION = "ai-stack/secret-version"


def test_config_checksum_follows_the_data_the_config_role_applies(rendered):
    """checksum/config is the hash of the ConfigMap's data, computed from what the config role applies
    (config_configmap_data), not read back; only the runner carries it."""
    annotations = pod_annotations(model_runner_deployment(rendered))
    data = rendered.one("ConfigMap")["data"]
    expected = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(", ", ": ")).encode()).hexdigest()
    assert annotations["checksum/config"] == expected
    assert "checksum/config" not in pod_annotations(backend(rendered))


def test_no_fingerprint_of_the_key_in_any_manifest(rendered):
    """Nothing rendered carries a hash of the API key or of the Secret's data (a fingerprint)."""
    key = rendered.api_key
    secret_data = rendered.one("Secret")["data"]
    fingerprints = set()
    for blob in (key, secret_data["ANTHROPIC_API_KEY"], json.dumps(secret_data, sort_keys=True),
                 json.dumps(secret_data, sort_keys=True, separators=(", ", ": "))):
        for algo in ("md5", "sha1", "sha256", "sha512"):
            fingerprints.add(hashlib.new(algo, blob.encode()).hexdigest())
    for name, text in rendered.files.items():
        if name == "config/secret.yaml":
            continue
        found = [f for f in fingerprints if f in text]
        assert not found, f"{name} carries a hash of the API key"
    assert "checksum/secret" not in pod_annotations(backend(rendered))


def test_cluster_reads_run_the_roles_own_task_files(rendered):
    """tests/render.yml ran each role's own task files that read the cluster (render_reads), from
    roles/, with kubernetes.core.k8s_info answered by the offline stand-in, and copied no task file."""
    results = rendered.run.results()
    reads = [r for r in results if r.action == "kubernetes.core.k8s_info"]
    expected = {(role, stem) for role, stems in render_vars()["render_reads"].items() for stem in stems}
    assert expected, "render_reads is empty"
    ran = set()
    for r in reads:
        path, _, line = r.path.rpartition(":")
        assert line.isdigit() and path.startswith(f"{ROLES_DIR}/"), f"{r.task} does not come from roles/: {r.path}"
        role, tasks_dir, file_name = path.removeprefix(f"{ROLES_DIR}/").split("/")
        assert tasks_dir == "tasks" and r.role == role, r.path
        ran.add((role, file_name.removesuffix(".yml")))
        assert not r.failed and not r.skipped, f"{r.task}: {r.result}"
        # The stand-in answered (a no_log task's result is censored, so it cannot say).
        assert r.censored or r.result["render_answered_from"] in ("manifests", "render_cluster_objects"), r.result
    assert ran == expected
    assert not [p for p in rendered.render_dir.rglob("*") if p.suffix == ".yml"], "the renderer wrote task files"


def called_task_files(role: str) -> set[str]:
    """The role's own task files its tasks/main.yml imports or includes (file stems)."""
    called = set()

    def walk(tasks):
        for task in tasks or []:
            for key in ("block", "rescue", "always"):
                walk(task.get(key))
            for key, value in task.items():
                short = key.rsplit(".", 1)[-1]
                if short in ("import_tasks", "include_tasks"):
                    called.add(str(value["file"] if isinstance(value, dict) else value).removesuffix(".yml"))
                elif short in ("import_role", "include_role") and value.get("name") == role:
                    called.add(str(value.get("tasks_from", "main")).removesuffix(".yml"))

    walk(load_yaml(ROLES_DIR / role / "tasks" / "main.yml"))
    return called


def template_inputs(role: str) -> str:
    """The text that feeds the role's templates: its vars/main.yml and its templates."""
    files = [ROLES_DIR / role / "vars" / "main.yml", *sorted((ROLES_DIR / role / "templates").glob("*.j2"))]
    return "\n".join(f.read_text() for f in files if f.is_file())


def test_render_reads_follow_the_roles():
    """render_reads in tests/render.yml lists exactly the task files each rendered role's main.yml calls
    that read the cluster (kubernetes.core.k8s_info) into a variable its templates or vars/main.yml use."""
    render_reads = render_vars()["render_reads"]
    for role in rendered_roles():
        feeding = set()
        for stem in called_task_files(role):
            tasks = flat_tasks(load_yaml(ROLES_DIR / role / "tasks" / f"{stem}.yml"))
            if not any("kubernetes.core.k8s_info" in t for t in tasks):
                continue
            produced = {t["register"] for t in tasks if "register" in t}
            produced |= {k for t in tasks for k in (t.get("ansible.builtin.set_fact") or {})}
            if any(re.search(rf"\b{re.escape(v)}\b", template_inputs(role)) for v in produced):
                feeding.add(stem)
        assert set(render_reads.get(role, [])) == feeding, (
            f"roles/{role}/tasks/main.yml calls {sorted(feeding)} to read what its templates need; "
            f"tests/render.yml render_reads has {render_reads.get(role, [])}"
        )
    assert set(render_reads) <= set(rendered_roles())


def test_config_checksums_follow_the_rendered_data(renders):
    """Different ConfigMap contents in the two scenarios give different checksums."""
    d, n = renders["default"], renders["nondefault"]
    assert (
        pod_annotations(model_runner_deployment(d))["checksum/config"]
        != pod_annotations(model_runner_deployment(n))["checksum/config"]
    )


def secret_object(namespace, name, resource_version):
    """The Secret as the API server returns it: with its resourceVersion."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": resource_version},
        "data": {"ANTHROPIC_API_KEY": base64.b64encode(b"sk-ant-in-the-cluster").decode()},
    }


@pytest.fixture(scope="module")
def variant_renders(renders, tmp_path_factory):
    """Renders of the config-dependent roles with other inputs: the same, a changed ConfigMap, a Secret
    that exists in the cluster (read by the chatbot role), a Secret version the config role returned in
    the same run, and Deployments declared autoscaled."""
    base = renders["default"]
    ns = base.one("Namespace")["metadata"]["name"]
    secret_name = base.one("Secret")["metadata"]["name"]
    extra_vars = {
        "same": {},
        "changed": {"config_extra_data": {"LOG_LEVEL": "debug"}},
        "secret_in_cluster": {"render_cluster_objects": [secret_object(ns, secret_name, "4242")]},
        "secret_applied": {"config_secret_version": "777",
                           "render_cluster_objects": [secret_object(ns, secret_name, "4242")]},
        "autoscaled": {"chatbot_autoscaled_deployments": [base.expected("chatbot_frontend_name"),
                                                          base.expected("chatbot_backend_name")],
                       "model_runner_autoscaled": True},
    }
    tmp = tmp_path_factory.mktemp("variants")
    roles = {"render_roles": ["config", "model_runner", "chatbot"]}
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {
            name: pool.submit(
                render, tmp / name, "-e", json.dumps({**roles, **ev}), scenario=name, api_key=base.api_key
            )
            for name, ev in extra_vars.items()
        }
        return {name: f.result() for name, f in futures.items()}


def config_checksum(r):
    return pod_annotations(model_runner_deployment(r))["checksum/config"]


def test_config_checksum_equal_for_equal_data_and_changes_with_it(renders, variant_renders):
    default = config_checksum(renders["default"])
    assert config_checksum(variant_renders["same"]) == default
    assert config_checksum(variant_renders["changed"]) != default


def test_the_backend_rolls_on_the_secrets_resource_version(renders, variant_renders):
    """The backend's pod template carries the Secret's resourceVersion: the one the config role's apply
    returned in this run, else the one read from the cluster; none when there is no Secret yet."""
    assert SECRET_VERSION not in pod_annotations(backend(renders["default"]))  # rendered: no version yet
    assert pod_annotations(backend(variant_renders["secret_in_cluster"]))[SECRET_VERSION] == "4242"
    assert pod_annotations(backend(variant_renders["secret_applied"]))[SECRET_VERSION] == "777"
    # The read runs only when the config role did not return the version.
    reads = [r for r in variant_renders["secret_applied"].run.results()
             if r.action == "kubernetes.core.k8s_info" and not r.skipped]
    assert reads == []
    for name in ("secret_in_cluster", "secret_applied"):
        assert SECRET_VERSION not in pod_annotations(frontend(variant_renders[name]))


# --- the secret ---------------------------------------------------------------------


def test_secret_holds_the_key_only_base64(rendered):
    text = rendered.files["config/secret.yaml"]
    assert rendered.api_key not in text
    secret = rendered.one("Secret")
    assert "stringData" not in secret
    assert base64.b64decode(secret["data"]["ANTHROPIC_API_KEY"]).decode() == rendered.api_key
    for key, other in rendered.files.items():
        assert rendered.api_key not in other, f"{key} contains the API key in plain text"


def test_secret_template_encodes_the_key():
    template = (ROLES_DIR / "config" / "templates" / "secret.yaml.j2").read_text()
    assert "stringData" not in template
    uses = re.findall(r"\{\{[^}]*config_anthropic_api_key[^}]*\}\}", template)
    assert uses and all("b64encode" in u for u in uses), uses


def test_tasks_handling_the_secret_have_no_log():
    tasks = flat_tasks(load_yaml(ROLES_DIR / "config" / "tasks" / "secret.yml"))
    # The rendered Secret is the block's variable __config_secret: every task that uses it.
    blocks = [t for t in load_yaml(ROLES_DIR / "config" / "tasks" / "secret.yml") if "block" in t]
    assert [b for b in blocks if "secret.yaml.j2" in json.dumps(b.get("vars"))], "secret.yml no longer renders secret.yaml.j2"
    applying = [t for t in tasks if re.search(r"secret\.yaml\.j2|__config_secret\b", json.dumps(t)) and "block" not in t]
    assert len(applying) == 2, "roles/config/tasks/secret.yml no longer dry-runs and applies the Secret"
    for task in applying:
        assert task.get("no_log") is True, task["name"]
    reads = [t for t in flat_tasks(load_yaml(ROLES_DIR / "chatbot" / "tasks" / "secret_version.yml"))
             if "kubernetes.core.k8s_info" in t]
    assert reads, "roles/chatbot/tasks/secret_version.yml no longer reads the Secret"
    for task in reads:
        assert task.get("no_log") is True, task["name"]


# --- HPA-owned Deployments ------------------------------------------------------------


def test_deployments_an_hpa_scales_omit_replicas(rendered):
    """A Deployment that an HPA of the autoscaling role scales is applied without replicas (the HPA
    keeps the count); every other Deployment has them. (The model runner's HPA is rendered either
    way; the role applies it only when autoscaling_model_runner_hpa_enabled, absent otherwise.)"""
    ns = namespace_name(rendered)
    targets = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in rendered.of_kind("HorizontalPodAutoscaler")
        if h["metadata"]["namespace"] == ns and h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    }
    scaled = {rendered.expected("chatbot_backend_name")}
    if rendered.expected("autoscaling_model_runner_hpa_enabled"):
        scaled.add(rendered.expected("model_runner_name"))
    assert scaled <= targets
    assert rendered.scenario != "nondefault" or len(scaled) == 2
    for d in rendered.of_kind("Deployment"):
        if d["metadata"].get("namespace") != ns:
            continue
        name = d["metadata"]["name"]
        assert ("replicas" in d["spec"]) == (
            name not in scaled
        ), f"{name}: {d['spec'].get('replicas')}, scaled {scaled}"
    assert frontend(rendered)["spec"]["replicas"] == rendered.expected("chatbot_frontend_replicas")


def test_deployments_declared_autoscaled_omit_replicas(renders, variant_renders):
    """An HPA that is not the autoscaling role's is declared with chatbot_autoscaled_deployments and
    model_runner_autoscaled (no read of the namespace's HPAs): those Deployments omit replicas."""
    default, r = renders["default"], variant_renders["autoscaled"]
    # Without them (the default scenario), the runner and the frontend have their replicas ...
    assert model_runner_deployment(default)["spec"]["replicas"] == 1
    assert frontend(default)["spec"]["replicas"] == 1
    # ... with them, neither has (nor the backend, which the autoscaling role's HPA scales).
    assert "replicas" not in model_runner_deployment(r)["spec"]
    assert "replicas" not in frontend(r)["spec"]
    assert "replicas" not in backend(r)["spec"]
    for d in r.of_kind("Deployment"):
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)

