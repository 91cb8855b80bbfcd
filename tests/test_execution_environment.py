"""execution-environment.yml and ansible-navigator.yml, checked offline.

Building the image needs a registry and Galaxy, which this machine does not have, so the test
checks the build context `ansible-builder create` writes, and validates ansible-navigator.yml
against the schema ansible-navigator itself prints.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from ai_stack_testlib import ROOT

BIN = Path(sys.executable).parent


def pins(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file."""
    found = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", line.strip())
        if m:
            found[m.group(1).lower()] = m.group(2)
    return found


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    out = tmp_path_factory.mktemp("ee") / "context"
    subprocess.run([str(BIN / "ansible-builder"), "create", "-f", str(ROOT / "execution-environment.yml"),
                    "-c", str(out)], check=True, cwd=ROOT, capture_output=True, text=True)
    return out


def test_the_build_context_pins_what_make_venv_installs(context):
    dockerfile = (context / "Dockerfile").read_text()
    project = pins(ROOT / "requirements.txt")
    # ansible-core and ansible-runner at the project's versions.
    refs = re.search(r'ARG ANSIBLE_INSTALL_REFS="([^"]+)"', dockerfile).group(1).split()
    assert f"ansible-core=={project['ansible-core']}" in refs
    assert f"ansible-runner=={project['ansible-runner']}" in refs
    # A base image pinned to a tag (or digest), never latest.
    base = re.search(r'ARG EE_BASE_IMAGE="([^"]+)"', dockerfile).group(1)
    assert ("@sha256:" in base or re.search(r":[^/:]+$", base)) and not base.endswith(":latest"), base
    # The modules' Python packages: each pinned, at requirements.txt's version.
    ee = pins(context / "_build" / "requirements.txt")
    assert "kubernetes" in ee
    assert all(project.get(name) == version for name, version in ee.items()), (ee, project)
    # The collections of requirements.yml.
    assert yaml.safe_load((context / "_build" / "requirements.yml").read_text()) == yaml.safe_load(
        (ROOT / "requirements.yml").read_text())


def test_navigator_settings_follow_its_schema():
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    schema = json.loads(subprocess.run(
        [str(BIN / "ansible-navigator"), "settings", "--schema", "json", "--mode", "stdout", "--ee", "false"],
        check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout)
    settings = yaml.safe_load((ROOT / "ansible-navigator.yml").read_text())
    jsonschema.validate(settings, schema)
    ee = settings["ansible-navigator"]["execution-environment"]
    built = yaml.safe_load((ROOT / "execution-environment.yml").read_text())
    assert ee["image"] in built["options"]["tags"]
    assert "ANTHROPIC_API_KEY" in ee["environment-variables"]["pass"]
