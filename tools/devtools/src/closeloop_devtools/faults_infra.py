"""A private Kafka broker and PostgreSQL cluster for the fault tests, which stop and restart them.

The fault run must not disturb anything else on the machine (other test runs, a developer's
`make run`), so it never touches the shared broker or database: it starts its own of each, in a
temporary folder, on ports of its own, and removes them at the end.

- `PrivateKafka` drives `scripts/kafka.sh` with `CLOSELOOP_INFRA_DIR` pointing into the folder
  and its own ports. The broker's jars are the ones `make infra-up` fetched (`kafka/libs-<version>`
  under CLOSELOOP_INFRA_DIR or the checkout's `.infra`, or `FAULTS_KAFKA_LIBS`), linked in rather
  than fetched again.
- `PrivatePostgres` is an `initdb` cluster (as the `postgres` OS user when run as root), with
  `trust` only on its own Unix socket in the folder; over TCP (loopback only) the role needs its
  password. `restart` is a fast shutdown and a start, as an operator's restart is.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
KAFKA_SCRIPT = ROOT / "scripts" / "kafka.sh"
ROLE = "closeloop"
PASSWORD = "closeloop"


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def require_free(ports: dict[str, int]) -> None:
    taken = [f"{name} {port}" for name, port in ports.items() if not port_free(port)]
    if taken:
        raise RuntimeError(f"ports needed by the fault run are taken: {', '.join(taken)}")


def kafka_version() -> str:
    pom = (ROOT / "infra" / "kafka" / "pom.xml").read_text()
    found = re.search(r"<kafka.version>(.*)</kafka.version>", pom)
    if found is None:
        raise RuntimeError("no <kafka.version> in infra/kafka/pom.xml")
    return found.group(1)


@dataclass
class PrivateKafka:
    state_dir: Path  # the CLOSELOOP_INFRA_DIR given to kafka.sh
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CLOSELOOP_INFRA_DIR": str(self.state_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
        }

    def _script(self, command: str) -> None:
        done = subprocess.run(
            [str(KAFKA_SCRIPT), command],
            env=self._env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"kafka.sh {command} failed:\n{done.stdout}\n{done.stderr}")

    def link_jars(self) -> None:
        """Reuse the jars `make infra-up` fetched instead of fetching them again."""
        version = kafka_version()
        target = self.state_dir / "kafka" / f"libs-{version}"
        if target.exists():
            return
        # Where `make infra-up` (kafka.sh) keeps them: CLOSELOOP_INFRA_DIR, else .infra.
        infra = Path(os.environ.get("CLOSELOOP_INFRA_DIR") or ROOT / ".infra")
        fetched = infra / "kafka" / f"libs-{version}"
        source = Path(os.environ.get("FAULTS_KAFKA_LIBS") or fetched)
        if not (source / ".complete").exists():
            # Fetched there once (from Maven's cache when it is there), as infra-up would.
            subprocess.run([str(KAFKA_SCRIPT), "fetch"], check=True, capture_output=True)
            source = fetched
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source.resolve(), target_is_directory=True)

    def up(self) -> None:
        self.link_jars()
        self._script("up")

    def down(self) -> None:
        self._script("down")


@dataclass
class PrivatePostgres:
    state_dir: Path  # holds data/, the socket and the server log
    port: int
    database: str

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{self.database}"

    @property
    def dsn(self) -> str:
        """For asyncpg directly."""
        return f"postgresql://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{self.database}"

    @staticmethod
    def _bindir() -> Path:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
        if not found:
            raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql")
        return found[-1]

    def _as_owner(self, *command: str) -> list[str]:
        # initdb and postgres refuse to run as root: the `postgres` OS user runs them then.
        if os.getuid() == 0:
            return ["runuser", "-u", "postgres", "--", *command]
        return list(command)

    def _run(self, *command: str) -> str:
        done = subprocess.run(self._as_owner(*command), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{command[0]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    @property
    def _data(self) -> Path:
        return self.state_dir / "data"

    def init(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(self.state_dir, "postgres", "postgres")
        bindir = self._bindir()
        self._run(
            str(bindir / "initdb"),
            "-D",
            str(self._data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        )
        with (self._data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.state_dir}'\n"
                "password_encryption = 'scram-sha-256'\nmax_connections = 200\n"
            )

    def start(self) -> None:
        self._run(
            str(self._bindir() / "pg_ctl"),
            "-D",
            str(self._data),
            "-l",
            str(self.state_dir / "server.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        """Fast shutdown: sessions are disconnected, open transactions rolled back."""
        self._run(str(self._bindir() / "pg_ctl"), "-D", str(self._data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            self._as_owner(str(self._bindir() / "pg_ctl"), "-D", str(self._data), "status"),
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def psql(self, sql: str) -> str:
        return self._run(
            str(self._bindir() / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.state_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            sql,
        )

    def create_database(self) -> None:
        # Names are this module's constants and a checked identifier, never outside input.
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.database):
            raise ValueError(f"not a plain database name: {self.database}")
        self.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        self.psql(f"CREATE DATABASE {self.database} OWNER {ROLE}")

    def up(self) -> None:
        self.init()
        self.start()
        self.create_database()

    def down(self) -> None:
        if self._data.exists() and self.running():
            self.stop()


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while port_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.1)
