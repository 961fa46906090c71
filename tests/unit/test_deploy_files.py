"""docker-compose.yml publishes nothing beyond this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


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
