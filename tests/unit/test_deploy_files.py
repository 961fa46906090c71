"""docker-compose.yml: nothing published beyond this machine, health checks and start order; the
service image's defaults. The deploy files checked by real tools are in tests/deploy."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from closeloop_common.services import SERVICES, ServiceDefinition

ROOT = Path(__file__).resolve().parents[2]
ONE_SHOTS = {"bootstrap"} | {f"{s.directory}-migrate" for s in SERVICES}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_compose_publishes_every_port_on_the_loopback_address_only() -> None:
    published: list[tuple[str, object]] = [
        (name, port)
        for name, service in compose()["services"].items()
        for port in service.get("ports", [])
    ]
    assert published, "docker-compose.yml publishes no port at all"
    exposed = [
        (name, port)
        for name, port in published
        if not (
            port.startswith("127.0.0.1:")
            if isinstance(port, str)
            else isinstance(port, dict) and port.get("host_ip") == "127.0.0.1"
        )
    ]
    assert exposed == []


def test_compose_has_the_stack_prometheus_grafana_and_one_shots() -> None:
    assert set(compose()["services"]) == (
        {"kafka", "postgres", "mailsink", "prometheus", "grafana"}
        | {s.directory for s in SERVICES}
        | ONE_SHOTS
    )


def test_every_long_running_compose_container_has_a_healthcheck() -> None:
    for name, service in compose()["services"].items():
        if name in ONE_SHOTS:
            assert service["restart"] == "no", name
            assert service["healthcheck"] == {"disable": True}, name
        else:
            assert service["restart"] == "unless-stopped", name
            assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name


@pytest.mark.parametrize("definition", SERVICES, ids=lambda s: s.name)
def test_compose_service_starts_after_the_topics_and_its_migrations(
    definition: ServiceDefinition,
) -> None:
    services = compose()["services"]
    migrate = services[f"{definition.directory}-migrate"]
    assert migrate["command"] == [definition.script, "migrate"]
    assert migrate["image"] == services[definition.directory]["image"]
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    depends_on = {
        name: spec["condition"]
        for name, spec in services[definition.directory]["depends_on"].items()
    }
    assert depends_on["bootstrap"] == "service_completed_successfully"
    assert depends_on[f"{definition.directory}-migrate"] == "service_completed_successfully"
    assert depends_on["kafka"] == depends_on["postgres"] == "service_healthy"


def test_compose_orders_the_orchestrator_after_scoring_and_the_notifier_after_mailpit() -> None:
    services = compose()["services"]
    assert services["loop-orchestrator"]["depends_on"]["scoring"] == {
        "condition": "service_healthy"
    }
    assert services["notifier"]["depends_on"]["mailsink"] == {"condition": "service_healthy"}
    assert services["bootstrap"]["command"] == ["closeloop-topics", "create"]


def test_compose_runs_the_images_with_a_read_only_root_filesystem() -> None:
    services = compose()["services"]
    for name in {s.directory for s in SERVICES} | ONE_SHOTS:
        assert services[name]["read_only"] is True, name
        assert services[name]["tmpfs"] == ["/tmp:size=64m"], name


def test_compose_provisions_prometheus_and_grafana_from_deploy() -> None:
    services = compose()["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    grafana = services["grafana"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    assert grafana["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


@pytest.mark.parametrize("definition", SERVICES, ids=lambda s: s.name)
def test_serve_defaults_to_the_port_the_image_exposes(definition: ServiceDefinition) -> None:
    # The image's CMD is `closeloop-service serve --host 0.0.0.0`: no --port, so the default
    # must be the service's port (the build arg PORT, EXPOSEd and health-checked).
    cli = importlib.import_module(f"{definition.package}.entrypoints.cli")
    assert definition.port == cli.PORT


def test_compose_scoring_watches_the_headlines_the_demo_feed_reports() -> None:
    """`make demo-feed` against `docker compose up` fills the NPS overview dashboard only if
    scoring watches the demo tenant's headline segments, as `make run` configures them."""
    from closeloop_devtools.demo import HEADLINES

    scoring = compose()["services"]["scoring"]["environment"]
    assert json.loads(scoring["SCORING_HEADLINES"]) == HEADLINES
