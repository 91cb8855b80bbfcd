"""group_vars/all and the role defaults stay in step; every default is declared in the argument specs.

A role's defaults must work without the project's group_vars (a role can be used
alone), so a default that depends on a shared setting has the form
``{{ ai_stack_x | default(<literal>) }}``; the literal must then be what
group_vars sets ai_stack_x to. A variable set in both places must have the same
value, or the group var is the plain reference ``{{ ai_stack_x }}`` to the same
shared setting.
"""

import ast
import json
import re

import pytest
from ai_stack_testlib import GROUP_VARS_DIR, ROLES_DIR, group_vars, load_yaml, role_names

# Set in both places on purpose, with different values: name -> why.
INTENDED_DIFFERENCES = {
    "cluster_expected_context": "a role used alone expects docker-desktop; the project expects the context it deploys to",
    "cluster_capacity_workloads": "only the project knows which workloads a run deploys (built from the other roles' vars)",
    "chatbot_autoscaled_deployments": "only the project knows that its autoscaling role puts an HPA on go-backend",
    "model_runner_autoscaled": "only the project knows whether its autoscaling role puts an HPA on the runner",
}

FALLBACK = re.compile(r"^\{\{\s*([A-Za-z_]\w*)\s*\|\s*default\((.*)\)\s*\}\}$", re.S)
REFERENCE = re.compile(r"^\{\{\s*([A-Za-z_]\w*)\s*\}\}$")


def is_template(value) -> bool:
    return "{{" in json.dumps(value) or "{%" in json.dumps(value)


def role_defaults(role: str) -> dict:
    return load_yaml(ROLES_DIR / role / "defaults" / "main.yml") or {}


def all_defaults() -> list[tuple[str, str, object]]:
    return [(role, name, value) for role in role_names() for name, value in role_defaults(role).items()]


def shared_names() -> list[tuple[str, str]]:
    gv = group_vars()
    return [(role, name) for role, name, _ in all_defaults() if name in gv]


def fallback_of(value):
    """(shared variable, literal fallback or None) of a `{{ x | default(literal) }}` default."""
    if not isinstance(value, str):
        return None
    m = FALLBACK.match(value.strip())
    if not m:
        return None
    try:
        return m.group(1), ast.literal_eval(m.group(2).strip())
    except (ValueError, SyntaxError):
        return m.group(1), None  # an expression, not a literal


def test_roles_and_group_vars_found():
    assert {"cluster", "namespace", "storage", "config", "model_runner", "chatbot"} <= set(role_names())
    assert len(shared_names()) >= 20


def test_no_variable_is_set_in_two_group_vars_files():
    seen = {}
    for path in sorted(GROUP_VARS_DIR.glob("*.yml")):
        for name in load_yaml(path) or {}:
            assert name not in seen, f"{name} is set in {seen[name]} and {path.name}"
            seen[name] = path.name


@pytest.mark.parametrize("role,name", [pytest.param(r, n, id=f"{r}-{n}") for r, n in shared_names()])
def test_group_var_agrees_with_role_default(role, name):
    group_value = group_vars()[name]
    default = role_defaults(role)[name]
    if name in INTENDED_DIFFERENCES:
        assert group_value != default, f"{name} no longer differs: drop it from INTENDED_DIFFERENCES"
        return
    if not is_template(group_value) and not is_template(default):
        assert group_value == default, f"{name}: group_vars {group_value!r} != roles/{role}/defaults {default!r}"
        return
    # A template on one side: allowed only as the reference form of the same shared variable.
    fallback = fallback_of(default)
    reference = REFERENCE.match(group_value.strip()) if isinstance(group_value, str) else None
    assert fallback and reference and reference.group(1) == fallback[0], (
        f"{name}: group_vars {group_value!r} vs roles/{role}/defaults {default!r}; use the same value, or "
        f"'{{{{ shared }}}}' in group_vars and '{{{{ shared | default(...) }}}}' in the role"
    )


FALLBACK_DEFAULTS = [
    pytest.param(role, name, value, id=f"{role}-{name}") for role, name, value in all_defaults() if fallback_of(value)
]


def test_fallback_defaults_found():
    assert len(FALLBACK_DEFAULTS) >= 15


@pytest.mark.parametrize("role,name,value", FALLBACK_DEFAULTS)
def test_fallback_equals_the_shared_group_var(role, name, value):
    """`{{ ai_stack_x | default(y) }}`: ai_stack_x exists in group_vars, and y is its value there."""
    shared, literal = fallback_of(value)
    gv = group_vars()
    assert shared in gv, f"roles/{role}/defaults {name} falls back from {shared}, which group_vars does not set"
    if literal is not None and not is_template(gv[shared]):
        assert literal == gv[shared], f"{name}: fallback {literal!r} != group_vars {shared}={gv[shared]!r}"


# --- argument specs ------------------------------------------------------------------


def spec_options(role: str) -> dict:
    """All options of all entry points of the role (name -> first spec found)."""
    specs = load_yaml(ROLES_DIR / role / "meta" / "argument_specs.yml")["argument_specs"]
    options = {}
    for entry in specs.values():
        for name, spec in (entry.get("options") or {}).items():
            options.setdefault(name, spec)
    return options


@pytest.mark.parametrize("role", role_names())
def test_role_has_argument_specs(role):
    path = ROLES_DIR / role / "meta" / "argument_specs.yml"
    assert path.is_file(), f"roles/{role} has no meta/argument_specs.yml"
    main = load_yaml(path)["argument_specs"]["main"]
    assert main.get("short_description") and main.get("options")


@pytest.mark.parametrize("role", role_names())
def test_defaults_and_argument_specs_declare_the_same_variables(role):
    defaults = set(role_defaults(role))
    declared = set(spec_options(role))
    assert not defaults - declared, f"roles/{role}: defaults not in argument_specs: {sorted(defaults - declared)}"
    assert not declared - defaults, f"roles/{role}: argument_specs without a default: {sorted(declared - defaults)}"


@pytest.mark.parametrize("role", role_names())
def test_documented_defaults_match_the_real_ones(role):
    """argument_specs' `default` is documentation only (Ansible takes defaults/main.yml): keep it true."""
    wrong = []
    defaults = role_defaults(role)
    for name, spec in spec_options(role).items():
        if "default" in spec and name in defaults and not is_template(defaults[name]):
            if spec["default"] != defaults[name]:
                wrong.append(f"{name}: documented {spec['default']!r}, defaults/main.yml {defaults[name]!r}")
    assert not wrong, f"roles/{role}/meta/argument_specs.yml: " + "; ".join(wrong)


@pytest.mark.parametrize("role", role_names())
def test_every_option_is_described_and_typed(role):
    for name, spec in spec_options(role).items():
        assert spec.get("type"), f"{role}: {name} has no type"
        assert spec.get("description"), f"{role}: {name} has no description"
