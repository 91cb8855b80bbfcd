"""Every default lives in one place, and every variable is declared.

- A role's defaults/main.yml is the only place its defaults live; the shared ones are in
  roles/ai_stack (a defaults-only role every other role depends on).
- group_vars/all holds switches (``*_enabled``, ``*_state``, ``*_mode``) and what this
  project sets differently from a role default, nothing else; the other settings are
  there as commented examples.
- A name one role owns and another consumes is written as a literal once, in the owner's
  defaults; consumers reference the owner's variable.
- The argument specs declare every variable a role has a default for, typed and described,
  without restating the value (Ansible takes defaults/main.yml; a copy could only drift).
"""

import json
import re

import pytest
from ai_stack_testlib import GROUP_VARS_DIR, ROLES_DIR, load_yaml

SWITCH = re.compile(r"_(enabled|state|mode)$")
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "defaults" / "main.yml").is_file())

# name -> (owner's variable, a consumer's variable that must reference it)
LINKED_NAMES = {
    "storage_pvc_name": "model_runner_pvc_name",
    "config_configmap_name": "model_runner_configmap_name",
    "config_secret_name": "chatbot_secret_name",
    "model_runner_name": "chatbot_backend_llm_url",
    "model_runner_port": "chatbot_backend_llm_url",
    "chatbot_backend_name": "autoscaling_backend_deployment",
    "chatbot_backend_port": "autoscaling_loadtest_url",
}

# Values that contain an owner's literal by coincidence, not as a reference: name -> why.
NOT_A_REFERENCE = {
    "chatbot_frontend_backend_url": "the address compiled into the frontend image: a port-forward on the user's machine",
    "kubeflow_ui_local_port": "a port on the user's machine for `kubectl port-forward`",
}


def role_defaults(role: str) -> dict:
    return load_yaml(ROLES_DIR / role / "defaults" / "main.yml") or {}


def all_defaults() -> dict:
    """{variable: (role, value)} over every role."""
    found = {}
    for role in ROLES:
        for name, value in role_defaults(role).items():
            assert name not in found, f"{name} has a default in roles/{found[name][0]} and roles/{role}"
            found[name] = (role, value)
    return found


def group_vars_set() -> dict:
    """{variable: (file, value)} of what group_vars/all sets (commented lines are examples)."""
    found = {}
    for path in sorted(GROUP_VARS_DIR.glob("*.yml")):
        for name, value in (load_yaml(path) or {}).items():
            assert name not in found, f"{name} is set in {found[name][0]} and {path.name}"
            found[name] = (path.name, value)
    return found


def spec_options(role: str) -> dict:
    specs = load_yaml(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]
    options = {}
    for entry in specs.values():
        for name, spec in (entry.get("options") or {}).items():
            options.setdefault(name, spec)
    return options


def test_every_role_found_and_depends_on_the_shared_defaults():
    assert {"ai_stack", "cluster", "namespace", "storage", "config", "model_runner", "chatbot", "autoscaling"} <= set(ROLES)
    for role in ROLES:
        if role == "ai_stack":
            continue
        deps = load_yaml(ROLES_DIR / role / "meta" / "main.yml").get("dependencies") or []
        assert {"role": "ai_stack"} in deps or "ai_stack" in deps, f"roles/{role}/meta/main.yml does not depend on ai_stack"


def test_no_default_is_defined_twice():
    all_defaults()


def test_group_vars_sets_only_switches_and_differences():
    defaults = all_defaults()
    for name, (path, value) in group_vars_set().items():
        assert name in defaults, f"group_vars/all/{path}: {name} is no role's variable (a typo?)"
        if SWITCH.search(name):
            continue
        assert value != defaults[name][1], (
            f"group_vars/all/{path}: {name} repeats roles/{defaults[name][0]}'s default; "
            "keep it as a commented example instead")


def test_group_vars_examples_name_real_variables():
    """The commented examples (`# name: value`) name variables that exist."""
    defaults = all_defaults()
    for path in sorted(GROUP_VARS_DIR.glob("*.yml")):
        for line in path.read_text().splitlines():
            m = re.match(r"^# ([a-z][a-z0-9]*_[a-z0-9_]+):( |$)", line)
            if m:
                assert m.group(1) in defaults, f"group_vars/all/{path.name}: example {m.group(1)} is no role's variable"


@pytest.mark.parametrize("owner,consumer", sorted(LINKED_NAMES.items()))
def test_linked_name_is_set_once_by_its_owner(owner, consumer):
    defaults = all_defaults()
    owner_value = defaults[owner][1]
    assert "{{" not in str(owner_value), f"{owner} should hold the literal name"
    consumer_value = str(defaults[consumer][1])
    assert re.search(r"\{\{[^}]*\b" + owner + r"\b", consumer_value), (
        f"roles/{defaults[consumer][0]}: {consumer} must derive from {owner}, got {consumer_value!r}")
    literal = str(owner_value)
    for name, (role, value) in defaults.items():
        if name != owner and name not in NOT_A_REFERENCE and not name.endswith("_image"):
            text = json.dumps(value)
            assert not re.search(r"(?<![\w-])" + re.escape(literal) + r"(?![\w-])", text), (
                f"roles/{role}: {name} repeats {owner}'s value {literal!r}; reference {owner} instead")


def test_no_role_falls_back_to_a_copy_of_a_shared_default():
    for name, (role, value) in all_defaults().items():
        assert not re.search(r"ai_stack_\w+\s*\|\s*default\(", json.dumps(value)), (
            f"roles/{role}: {name} copies a shared default; roles/ai_stack has it")


@pytest.mark.parametrize("role", ROLES)
def test_role_has_argument_specs(role):
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"roles/{role} has no meta/argument_specs.yml"
    main = load_yaml(path)["argument_specs"]["main"]
    assert main.get("short_description") and main.get("options")


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_declare_the_same_variables(role):
    defaults = set(role_defaults(role))
    declared = set(spec_options(role))
    shared = set(role_defaults("ai_stack"))
    assert not defaults - declared, f"roles/{role}: defaults not in argument_specs: {sorted(defaults - declared)}"
    # A role may also declare a shared variable it reads but does not own.
    assert not declared - defaults - shared, f"roles/{role}: argument_specs without a default: {sorted(declared - defaults - shared)}"


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_do_not_restate_values(role):
    restated = [name for name, spec in spec_options(role).items() if "default" in spec]
    assert not restated, f"roles/{role}/meta/argument_specs.yml restates defaults/main.yml for {restated}"


@pytest.mark.parametrize("role", ROLES)
def test_every_option_is_described_and_typed(role):
    for name, spec in spec_options(role).items():
        assert spec.get("type"), f"{role}: {name} has no type"
        assert spec.get("description"), f"{role}: {name} has no description"


@pytest.mark.parametrize("role", [r for r in ROLES if r != "ai_stack"])
def test_namespace_pending_is_declared_where_read(role):
    tasks = " ".join(p.read_text() for p in (ROLES_DIR / role / "tasks").glob("*.yml"))
    if "ai_stack_namespace_pending" in tasks:
        assert "ai_stack_namespace_pending" in spec_options(role), f"roles/{role} reads ai_stack_namespace_pending without declaring it"
