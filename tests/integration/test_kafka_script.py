"""scripts/kafka.sh uses a listener on its port only when that listener is a Closeloop broker.

Every run here uses free ports and temporary state folders, never the broker on 9092. Kafka's
jars are linked from this checkout's `.infra` when `make infra-up` fetched them, else fetched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Checkout:
    """A state folder as another checkout of the project would have it, and the broker ports."""

    infra_dir: Path
    port: int
    controller_port: int

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "CLOSELOOP_INFRA_DIR": str(self.infra_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.port}",
        }
        return subprocess.run(
            ["bash", str(SCRIPT), command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture
def checkout_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="cl-kafka-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_up_refuses_a_port_taken_by_something_that_is_not_kafka(checkout_dir: Path) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        checkout = Checkout(checkout_dir, foreign.getsockname()[1], free_port())
        up = checkout.run("up")
        status = checkout.run("status")
    assert up.returncode != 0, up.stdout
    assert f"127.0.0.1:{checkout.port}" in up.stdout + up.stderr
    assert "not a Closeloop Kafka broker" in up.stdout + up.stderr
    assert not (checkout_dir / "kafka" / "broker.pid").exists()
    assert status.returncode != 0


@pytest.fixture(scope="module")
def running_broker() -> Iterator[Checkout]:
    """A broker started by `kafka.sh up` from a temporary state folder on free ports."""
    infra_dir = Path(tempfile.mkdtemp(prefix="cl-kafka-"))
    fetched = sorted((ROOT / ".infra" / "kafka").glob("libs-*/.complete"))
    if fetched:
        (infra_dir / "kafka").mkdir()
        (infra_dir / "kafka" / fetched[-1].parent.name).symlink_to(fetched[-1].parent)
    checkout = Checkout(infra_dir, free_port(), free_port())
    try:
        up = checkout.run("up")
        assert up.returncode == 0, up.stdout + up.stderr
        yield checkout
    finally:
        down = checkout.run("down")
        shutil.rmtree(infra_dir, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert not port_open(checkout.port)


def test_second_up_reuses_the_running_broker(running_broker: Checkout) -> None:
    again = running_broker.run("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout
    assert running_broker.run("status").returncode == 0


def test_another_checkouts_broker_is_used_but_never_stopped(
    running_broker: Checkout, checkout_dir: Path
) -> None:
    pid = (running_broker.infra_dir / "kafka" / "broker.pid").read_text().strip()
    other = Checkout(checkout_dir, running_broker.port, running_broker.controller_port)

    up = other.run("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"pid {pid}" in up.stdout
    assert other.run("status").returncode == 0

    down = other.run("down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert Path(f"/proc/{pid}").exists()
    assert port_open(running_broker.port)
