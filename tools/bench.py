#!/usr/bin/env python3
"""`make bench`: how long the stack's runs take, side by side in one run, on the simulated cluster.

Not part of `make test` (timings are measured here, never asserted in tests). It starts the
simulated cluster itself, with workers big enough for ten copies of the stack
(TESTCLUSTER_WORKER_CPU / _MEMORY), and stops it at the end. Each row is the median of
BENCH_REPS runs (default 3); ratios are to the first row of the same run, so machines compare.

  1. `kubectl apply --server-side -f` of the core stack's objects, already applied (the floor);
  2. a no-op `site.yml` (the second run, changed=0) of the core stack, with what it is made of: the
     kubernetes.core module runs and the other tasks in its JSON report, and the cost of Ansible's
     start (a playbook of one `debug` task) and of one more kubernetes.core call (playbooks of five
     and of one k8s_info call: the difference over four, so the first call's one-off costs stay out),
     and of the same read as five kubernetes.core.k8s lookups in one task;
     the no-op again without the preload callback (AI_STACK_PRELOAD=false), and with every object
     applied by kubernetes.core.k8s (ai_stack_skip_unchanged=false: no dry run first), alternating;
  3. a no-op `site.yml --tags chatbot`, also those two ways; both again with Mitogen's strategy
     (`make deploy MITOGEN=1`);
  4. a first converge of the core stack into a new namespace;
  5. the core stack converged into 1, 5 and 10 namespaces, one run each (BENCH_SCALE="1,5,10"):
     the time per namespace should stay flat (linear growth);
  6. the four ML ecosystem tools installed by `site.yml` in sequence (ai_stack_ecosystem_concurrent=false)
     and concurrently (the default), with the molecule scenario `ecosystem`'s inventory (local fixtures,
     core stack off) and its simulated operators; playbooks/cleanup.yml removes them between runs.

BENCH_ONLY=ecosystem runs only row 6, BENCH_ONLY=core rows 1 to 5. Writes .bench/results.md (Markdown, the README quotes it) and prints it.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = REPO / ".bench"
REPS = int(os.environ.get("BENCH_REPS", "3"))
SCALE = [int(n) for n in os.environ.get("BENCH_SCALE", "1,5,10").split(",")]
# BENCH_ONLY=ecosystem: only row 6 (no floor row, so no ratios to it); BENCH_ONLY=core: rows 1 to 5.
ONLY = os.environ.get("BENCH_ONLY", "")
if ONLY not in ("", "core", "ecosystem"):
    sys.exit(f"[bench] BENCH_ONLY={ONLY}: use core, ecosystem, or leave it unset for every row")
CONTEXT = "kwok-desktop-sim"
KUBECONFIG = REPO / ".testcluster" / "kubeconfig"
# The chatbot images cannot be loaded into simulated nodes (no Docker there).
PLAYBOOK_ARGS = ["-e", f"cluster_expected_context={CONTEXT}", "-e", "chatbot_image_load_enabled=false"]
KINDS = "configmap,secret,persistentvolumeclaim,service,deployment,horizontalpodautoscaler"


def say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def env() -> dict:
    return dict(os.environ, K8S_AUTH_KUBECONFIG=str(KUBECONFIG), K8S_AUTH_CONTEXT=CONTEXT,
                KUBECONFIG=str(KUBECONFIG), ANTHROPIC_API_KEY=os.environ.get("ANTHROPIC_API_KEY") or "bench-key-not-a-secret",
                ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", PATH=f"{BIN}:{os.environ.get('PATH', '')}")


def timed(cmd: list[str], what: str) -> tuple[float, dict | None]:
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env(), capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"[bench] {what} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    report = None
    if any(part.endswith("ansible-playbook") for part in cmd):
        report = json.loads(done.stdout[done.stdout.index("{"):])
    return seconds, report


def site(namespace: str, *args: str, strategy: str = "", preload: bool = True) -> tuple[float, int]:
    seconds, report = site_report(namespace, *args, strategy=strategy, preload=preload)
    return seconds, sum(h["changed"] for h in report["stats"].values())


def site_report(namespace: str, *args: str, strategy: str = "", preload: bool = True) -> tuple[float, dict]:
    """Runs site.yml; strategy: another Ansible strategy; preload=False: without the preload callback
    (plugins/callback/ai_stack_preload.py), so each task's worker loads its own plugins."""
    cmd = [str(BIN / "ansible-playbook"), "site.yml", *PLAYBOOK_ARGS, "-e", f"ai_stack_namespace={namespace}", *args]
    if strategy:
        cmd = ["env", f"ANSIBLE_STRATEGY={strategy}", *cmd]
    if not preload:
        cmd = ["env", "AI_STACK_PRELOAD=false", *cmd]
    return timed(cmd, f"site.yml {namespace} {args} {strategy} preload={preload}")


def runs(report: dict) -> tuple[int, int, int]:
    """(kubernetes.core module runs, other tasks that ran, skipped tasks) in a JSON callback report;
    a loop's items count one each, skipped items not at all."""
    calls = others = skipped = 0
    for play in report["plays"]:
        for task in play["tasks"]:
            for result in task["hosts"].values():
                if result.get("skipped"):
                    skipped += 1
                    continue
                items = [r for r in result.get("results") or [] if not r.get("skipped")] if "results" in result else [result]
                if str(result.get("action", "")).startswith("kubernetes.core."):
                    calls += len(items)
                else:
                    others += 1
    return calls, others, skipped


def few_tasks(module: str, count: int) -> str:
    return "- name: Tasks\n  hosts: localhost\n  gather_facts: false\n  tasks:\n" + "".join(
        f"    - name: Task {i}\n      {module}\n" for i in range(count))


def few_task_rows(namespace: str) -> tuple[list[tuple[str, float, str]], float, float]:
    """Ansible's start (a playbook of one debug task), and the cost of one more kubernetes.core call:
    (five k8s_info calls - one) / 4, so the first call's one-off costs (the collection, the discovery
    cache) stay out; and the same read five times as lookups in one task, in the task's own process
    (how the roles read when the controller is this machine). Returns the rows, the start and the
    cost per call."""
    rows = []
    info = f"kubernetes.core.k8s_info: {{kind: Namespace, name: {namespace}}}"
    # The same read as a kubernetes.core.k8s lookup, as the roles read on this machine: five in one task.
    read = f"query('kubernetes.core.k8s', kind='Namespace', resource_name='{namespace}')"
    lookups = "ansible.builtin.set_fact: {found: \"{{ [" + ", ".join([read] * 5) + "] }}\"}"
    with tempfile.TemporaryDirectory() as tmp:
        for what, module, count in (("`ansible-playbook` of one `debug` task (Ansible's start, the preload included)", "ansible.builtin.debug: {msg: hi}", 1),
                                    ("`ansible-playbook` of one `kubernetes.core.k8s_info` call", info, 1),
                                    ("`ansible-playbook` of five `kubernetes.core.k8s_info` calls", info, 5),
                                    ("`ansible-playbook` of one task with five `kubernetes.core.k8s` lookups (the same read)",
                                     lookups, 1)):
            play = Path(tmp) / "tasks.yml"
            play.write_text(few_tasks(module, count))
            cmd = [str(BIN / "ansible-playbook"), str(play)]
            rows.append((what, median([timed(cmd, what)[0] for _ in range(REPS)]), ""))
    call = (rows[2][1] - rows[1][1]) / 4
    rows[2] = (rows[2][0], rows[2][1], f"{call:.2f} s per call after the first")
    return rows, rows[0][1], call


ECOSYSTEM = REPO / "molecule" / "ecosystem"
# The scenario's inventories, in molecule's order (.config/molecule/config.yml): project, shared, scenario.
ECOSYSTEM_INVENTORY = [arg for inv in (REPO / "inventory", REPO / "molecule" / "shared" / "inventory",
                                       ECOSYSTEM / "inventory") for arg in ("-i", str(inv / "hosts.yml"))]


def ecosystem(playbook: str, *args: str) -> tuple[float, int]:
    """One run of `playbook` with the ecosystem scenario's inventory; seconds and changed count."""
    cmd = ["env", f"MOLECULE_PROJECT_DIRECTORY={REPO}", "MOLECULE_CLUSTER=sim",
           str(BIN / "ansible-playbook"), *ECOSYSTEM_INVENTORY, playbook, *args]
    seconds, report = timed(cmd, f"{playbook} {args} (ecosystem tools)")
    return seconds, sum(h["changed"] for h in report["stats"].values())


def ecosystem_rows(reps: int) -> list[tuple[str, float, str]]:
    """The four tools installed in sequence and concurrently, alternately, from nothing each time."""
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        pidfile = str(Path(tmp) / "sim-operators.pid")
        operators = [sys.executable, str(ECOSYSTEM / "sim_operators.py")]
        subprocess.run([*operators, "start", pidfile], cwd=REPO, env=env(), check=True, stdout=subprocess.DEVNULL)
        try:
            for _ in range(reps):
                for concurrent in (False, True):
                    seconds, changed = ecosystem("site.yml", "-e", f"ai_stack_ecosystem_concurrent={concurrent}")
                    if not changed:
                        sys.exit("[bench] the ecosystem install changed nothing: the tools were not removed before it")
                    say(f"ecosystem tools {'concurrently' if concurrent else 'in sequence'}: {seconds:.1f} s")
                    times[concurrent].append(seconds)
                    ecosystem("playbooks/cleanup.yml")
        finally:
            subprocess.run([*operators, "stop", pidfile], cwd=REPO, env=env(), stdout=subprocess.DEVNULL)
    sequence, concurrently = median(times[False]), median(times[True])
    return [("the four ecosystem tools installed in sequence (`ai_stack_ecosystem_concurrent=false`)", sequence, ""),
            ("the four ecosystem tools installed concurrently (the default)", concurrently,
             f"{sequence / concurrently:.2f} times as fast as in sequence")]


def export_objects(namespace: str, path: Path, target: str) -> int:
    """The stack's objects as a user would keep them in a file (no status, no server fields),
    moved to namespace ``target``."""
    out = subprocess.run(["kubectl", "get", KINDS, "-n", namespace, "-l", "app.kubernetes.io/managed-by=ansible",
                          "-o", "json"], env=env(), capture_output=True, text=True, check=True).stdout
    items = json.loads(out)["items"]
    for obj in items:
        obj.pop("status", None)
        meta = obj["metadata"]
        meta["namespace"] = target
        for key in ("resourceVersion", "uid", "managedFields", "creationTimestamp", "generation", "annotations"):
            meta.pop(key, None)
        if obj["kind"] == "Service":
            for key in ("clusterIP", "clusterIPs"):
                obj["spec"].pop(key, None)
        if obj["kind"] == "PersistentVolumeClaim":
            obj["spec"].pop("volumeName", None)
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return len(items)


# Every object through kubernetes.core.k8s, without asking the API server first (the roles before the lookup k8s_unchanged).
MODULES = ("-e", "ai_stack_skip_unchanged=false")


def median(values: list[float]) -> float:
    return statistics.median(values)


def cluster(action: str) -> None:
    tool = [sys.executable, "-m", "testcluster", action]
    extra = {"TESTCLUSTER_WORKER_CPU": "96", "TESTCLUSTER_WORKER_MEMORY": "384Gi"} if action == "up" else {}
    subprocess.run(tool, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO / "tools"), **extra),
                   check=True, stdout=subprocess.DEVNULL)


def core_rows() -> list[tuple[str, float, str]]:
    """Rows 1-5: the core stack (the first row is the floor the ratios refer to)."""
    rows: list[tuple[str, float, str]] = []
    ns = "bench-0"
    first, changed = site(ns)
    say(f"first converge of {ns}: {first:.1f} s, changed={changed}")
    with tempfile.TemporaryDirectory() as tmp:
        # The same objects in a namespace of their own (so the roles' objects keep one owner):
        # one apply creates them, the timed ones change nothing, like the no-op run.
        objects = Path(tmp) / "stack.json"
        count = export_objects(ns, objects, "bench-kubectl")
        apply = ["kubectl", "apply", "--server-side", "-f", str(objects)]
        subprocess.run(["kubectl", "create", "namespace", "bench-kubectl"], env=env(), check=True,
                       capture_output=True)
        timed(apply, "kubectl apply (create)")
        kubectl = [timed(apply, "kubectl apply")[0] for _ in range(REPS)]
    rows.append((f"`kubectl apply --server-side` of the same {count} objects", median(kubectl), ""))
    noop, unloaded, applied = [], [], []
    # Alternating with and without the preload, and with every object through the module, so all see the same machine.
    for _ in range(REPS):
        seconds, report = site_report(ns)
        changed = sum(h["changed"] for h in report["stats"].values())
        if changed:
            sys.exit(f"[bench] the no-op run changed {changed} things")
        noop.append(seconds)
        seconds, changed = site(ns, preload=False)
        if changed:
            sys.exit(f"[bench] the no-op run without the preload changed {changed} things")
        unloaded.append(seconds)
        seconds, changed = site(ns, *MODULES)
        if changed:
            sys.exit(f"[bench] the no-op run with every apply through the module changed {changed} things")
        applied.append(seconds)
    parts, start, call = few_task_rows(ns)
    calls, others, skipped = runs(report)
    rest = median(noop) - start - calls * call
    rows.append(("no-op `site.yml` (core stack, changed=0)", median(noop),
                 f"Ansible's start ({start:.1f} s), {calls} kubernetes.core module runs (about {calls * call:.0f} s at "
                 f"{call:.2f} s each, rows below), and {others} other tasks and {skipped} skipped ones in the "
                 f"{rest:.0f} s left ({rest / (others + skipped):.2f} s each)"))
    rows.append(("no-op `site.yml` without the preload (`AI_STACK_PRELOAD=false`)", median(unloaded),
                 "each task's worker loads its own filters, lookups and the Kubernetes client"))
    rows.append(("no-op `site.yml` with every apply through the module (`-e ai_stack_skip_unchanged=false`)",
                 median(applied), "no dry run first: kubernetes.core.k8s runs for every object, as before"))
    rows.extend(parts)
    tagged, tagged_unloaded, tagged_applied = [], [], []
    for _ in range(REPS):
        tagged.append(site(ns, "--tags", "chatbot")[0])
        tagged_unloaded.append(site(ns, "--tags", "chatbot", preload=False)[0])
        tagged_applied.append(site(ns, "--tags", "chatbot", *MODULES)[0])
    rows.append(("no-op `site.yml --tags chatbot`", median(tagged), ""))
    rows.append(("no-op `site.yml --tags chatbot` without the preload", median(tagged_unloaded), ""))
    rows.append(("no-op `site.yml --tags chatbot` with every apply through the module", median(tagged_applied), ""))
    mitogen = []
    for _ in range(REPS):
        seconds, changed = site(ns, strategy="mitogen_linear")
        if changed:
            sys.exit(f"[bench] the no-op run with Mitogen changed {changed} things")
        mitogen.append(seconds)
    rows.append(("no-op `site.yml` with Mitogen (`make deploy MITOGEN=1`)", median(mitogen), ""))
    rows.append(("no-op `site.yml --tags chatbot` with Mitogen",
                 median([site(ns, "--tags", "chatbot", strategy="mitogen_linear")[0] for _ in range(REPS)]), ""))
    firsts = [first] + [site(f"bench-first-{i}")[0] for i in range(1, REPS)]
    rows.append(("first converge of the core stack (new namespace)", median(firsts), ""))
    for n in SCALE:
        each = [site(f"bench-scale{n}-{i}")[0] for i in range(n)]
        total = sum(each)
        # First and last namespace: linear growth keeps them equal; a rise within the row means a run costs
        # more with more stacks in the cluster (the load average says whether the machine was busy).
        rows.append((f"core stack into {n} namespace(s), one run each", total,
                     f"{total / n:.1f} s per namespace (first {each[0]:.1f}, last {each[-1]:.1f}; "
                     f"load average {os.getloadavg()[0]:.1f} after)"))
    return rows


def main() -> int:
    if not shutil.which("kubectl"):
        sys.exit("[bench] kubectl is needed (the floor row applies the same objects with it)")
    status = subprocess.run([sys.executable, "-m", "testcluster", "status"], cwd=REPO, capture_output=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO / "tools")))
    if status.returncode == 0:
        sys.exit("[bench] the simulated cluster is already running: `make cluster-down` first (the bench "
                 "starts it with larger workers)")
    OUT.mkdir(exist_ok=True)
    rows: list[tuple[str, float, str]] = []
    say(f"starting the simulated cluster; {REPS} repetitions per row")
    cluster("up")
    try:
        if ONLY != "ecosystem":
            rows.extend(core_rows())
        if ONLY != "core":
            rows.extend(ecosystem_rows(REPS))
    finally:
        cluster("down")
    floor = rows[0][1] if ONLY != "ecosystem" else float("nan")
    lines = ["| run | median (s) | × kubectl apply | note |", "|---|---|---|---|"]
    for name, seconds, note in rows:
        ratio = "–" if floor != floor else f"{seconds / floor:.0f}"  # nan: no floor row in this run
        lines.append(f"| {name} | {seconds:.1f} | {ratio} | {note} |")
    header = (f"Measured {time.strftime('%Y-%m-%d')} by `make bench` on {os.cpu_count()} cores, simulated "
              f"cluster, {REPS} repetitions (median; the namespace rows are one run each).")
    text = header + "\n\n" + "\n".join(lines) + "\n"
    (OUT / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
