"""Every file that lists the services agrees with `closeloop_common.services.SERVICES`.

The Python places import the definition; these files cannot, so this test keeps them in step: the
services/ folders and their console scripts, the root pyproject.toml, the Makefile's mypy
packages, the Dockerfile, docker-compose.yml and the Kubernetes base (Deployments and migration
Jobs).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from closeloop_common.services import SERVICES, ServiceDefinition, main, service

ROOT = Path(__file__).resolve().parents[2]


def toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def test_every_service_folder_is_defined() -> None:
    folders = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert folders == {s.directory for s in SERVICES}


@pytest.mark.parametrize("definition", SERVICES, ids=lambda s: s.name)
def test_service_package_provides_its_console_script(definition: ServiceDefinition) -> None:
    project = toml(ROOT / "services" / definition.directory / "pyproject.toml")["project"]
    assert project["name"] == f"closeloop-{definition.name}"
    entry = project["scripts"][definition.script]
    assert entry.startswith(f"{definition.package}.")
    assert (ROOT / "services" / definition.directory / "src" / definition.package).is_dir()


def test_workspace_root_lists_every_service() -> None:
    root = toml(ROOT / "pyproject.toml")
    wanted = {f"closeloop-{s.name}" for s in SERVICES}
    listed = {d for d in root["project"]["dependencies"] if d.startswith("closeloop-")}
    assert wanted <= listed
    assert listed - wanted == {"closeloop-common", "closeloop-devtools"}
    assert set(root["tool"]["uv"]["sources"]) == listed
    first_party = set(root["tool"]["ruff"]["lint"]["isort"]["known-first-party"])
    assert first_party == {s.package for s in SERVICES} | {"closeloop_common", "closeloop_devtools"}


def test_makefile_type_checks_every_service_package() -> None:
    makefile = (ROOT / "Makefile").read_text()
    line = re.search(r"^PACKAGES :=(.*)$", makefile, re.MULTILINE)
    assert line is not None
    packages = set(re.findall(r"-p (\S+)", line.group(1)))
    assert packages == {s.package for s in SERVICES} | {"closeloop_common", "closeloop_devtools"}


def test_makefile_migrates_the_defined_services() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^migrate:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe is not None
    assert "closeloop_common.services scripts" in recipe.group(1)


def test_dockerfile_copies_every_member_manifest() -> None:
    dockerfile = (ROOT / "deploy" / "docker" / "service.Dockerfile").read_text()
    copied = set(re.findall(r"^COPY services/([^/]+)/pyproject.toml ", dockerfile, re.MULTILINE))
    assert copied == {s.directory for s in SERVICES}


def test_compose_runs_each_service_with_its_script_and_port() -> None:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    one_shots = {"bootstrap"} | {f"{s.directory}-migrate" for s in SERVICES}
    built = {
        name
        for name, spec in services.items()
        if name not in one_shots and isinstance(spec.get("build"), dict)
    }
    assert built == {s.directory for s in SERVICES}
    for definition in SERVICES:
        spec = services[definition.directory]
        assert spec["build"]["args"] == {
            "SERVICE": definition.name,
            "SERVICE_DIR": definition.directory,
            "PORT": str(definition.port),
        }
        assert spec["image"].startswith(f"closeloop/{definition.name}:")
        assert f"{definition.script} serve" in " ".join(spec["command"])
        assert f"--port {definition.port}" in " ".join(spec["command"])
        assert spec["ports"] == [f"127.0.0.1:{definition.port}:{definition.port}"]


def test_kubernetes_base_deploys_each_service_with_its_script_and_port() -> None:
    base = ROOT / "deploy" / "k8s" / "base"
    resources = set(yaml.safe_load((base / "kustomization.yaml").read_text())["resources"])
    shared = {"configmap.yaml", "migrations.yaml", "network-policies.yaml", "service-monitor.yaml"}
    # Generated from deploy/prometheus/rules and deploy/grafana/dashboards (closeloop_devtools).
    generated = {"prometheus-rule.yaml", "grafana-dashboards.yaml"}
    assert resources - shared - generated == {f"{s.directory}.yaml" for s in SERVICES}
    jobs = {
        job["metadata"]["name"]: job["spec"]["template"]["spec"]["containers"][0]
        for job in yaml.safe_load_all((base / "migrations.yaml").read_text())
    }
    assert {name: (c["image"].split(":")[0], c["command"]) for name, c in jobs.items()} == {
        f"{s.directory}-migrate": (f"closeloop/{s.name}", [s.script, "migrate"]) for s in SERVICES
    }
    for definition in SERVICES:
        documents = list(yaml.safe_load_all((base / f"{definition.directory}.yaml").read_text()))
        deployment = next(d for d in documents if d["kind"] == "Deployment")
        assert deployment["metadata"]["name"] == definition.directory
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].startswith(f"closeloop/{definition.name}:")
        assert container["command"][0] == definition.script
        assert container["ports"][0]["containerPort"] == definition.port


def test_service_lookup_and_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert service("orchestrator").directory == "loop-orchestrator"
    with pytest.raises(KeyError):
        service("billing")
    assert main(["scripts"]) == 0
    assert capsys.readouterr().out.split() == [s.script for s in SERVICES]
