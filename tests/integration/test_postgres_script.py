"""scripts/postgres.sh makes a private cluster that trusts nobody and survives awkward paths.

The script runs here with a free port and a temporary state folder, never against the server on
5432. As root it would use Debian's cluster, so the test runs it as the unprivileged `nobody`,
which takes the private-cluster (initdb) path that any non-root developer gets.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "postgres.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def as_unprivileged_user() -> list[str]:
    return ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []


def run_script(command: str, *, infra_dir: Path, port: int) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "CLOSELOOP_INFRA_DIR": str(infra_dir),
        "PGPORT": str(port),
    }
    # A copy inside the state folder: `nobody` may not be allowed into the checkout's path.
    script = infra_dir / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    return subprocess.run(
        [*as_unprivileged_user(), "bash", str(script), command],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def private_cluster() -> Iterator[tuple[Path, int]]:
    """A private cluster made by `postgres.sh up` in a folder whose path has a space and a quote
    (a value that breaks any shell command string it is pasted into)."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.fail("PostgreSQL's binaries (initdb) are needed for this test")
    infra_dir = Path(tempfile.mkdtemp(prefix="cl pg's "))
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(infra_dir, nobody.pw_uid, nobody.pw_gid)
    port = free_port()
    try:
        up = run_script("up", infra_dir=infra_dir, port=port)
        assert up.returncode == 0, up.stdout + up.stderr
        yield infra_dir, port
    finally:
        down = run_script("down", infra_dir=infra_dir, port=port)
        shutil.rmtree(infra_dir, ignore_errors=True)
        assert down.returncode == 0, down.stdout + down.stderr


def hba_methods(data_dir: Path) -> list[str]:
    """The authentication method of every rule in pg_hba.conf."""
    methods = []
    for line in (data_dir / "pg_hba.conf").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        # local DATABASE USER METHOD [OPTIONS]; host DATABASE USER ADDRESS METHOD [OPTIONS]
        methods.append(fields[3] if fields[0] == "local" else fields[4])
    return methods


def test_private_cluster_trusts_no_connection(private_cluster: tuple[Path, int]) -> None:
    infra_dir, _ = private_cluster
    methods = hba_methods(infra_dir / "postgres" / "data")
    assert methods, "pg_hba.conf has no rules"
    assert "trust" not in methods
    assert set(methods) <= {"peer", "scram-sha-256"}


async def test_the_closeloop_role_logs_in_with_its_password_only(
    private_cluster: tuple[Path, int],
) -> None:
    _, port = private_cluster
    for database in ("closeloop", "closeloop_test", "closeloop_bench"):
        conn = await asyncpg.connect(
            host="127.0.0.1", port=port, user="closeloop", password="closeloop", database=database
        )
        try:
            assert await conn.fetchval("SELECT current_user") == "closeloop"
        finally:
            await conn.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host="127.0.0.1", port=port, user="closeloop", password="wrong", database="closeloop"
        )


async def test_the_superuser_cannot_log_in_over_tcp_without_a_password(
    private_cluster: tuple[Path, int],
) -> None:
    _, port = private_cluster
    for user in ("postgres", "closeloop"):
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(host="127.0.0.1", port=port, user=user, database="postgres")


def test_a_second_up_is_idempotent(private_cluster: tuple[Path, int]) -> None:
    infra_dir, port = private_cluster
    again = run_script("up", infra_dir=infra_dir, port=port)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ready on 127.0.0.1" in again.stdout


def test_no_script_pastes_values_into_a_su_command_string() -> None:
    # `su USER -c "... $x"` hands $x to a second shell to parse: a role, a password or a path
    # becomes code. Values must reach the other user's command as arguments instead.
    offending = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted((ROOT / "scripts").glob("*.sh"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bsu\b.*-c\s*\"[^\"]*\$", line)
    ]
    assert offending == []
