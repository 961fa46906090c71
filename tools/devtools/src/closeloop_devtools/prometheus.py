"""A real Prometheus server (the `prometheus` binary) with the shipped configuration and rules of
deploy/prometheus, scraping given targets: for the end-to-end test of the alerts and metrics.

The configuration is the shipped one with three changes, all in a copy in `workdir`: the targets
file names the given processes (file discovery reads `targets/*.json`), the scrape and evaluation
intervals are `interval` (1 s, so a test need not wait 15 s a step), and the alerts named in
`alert_for` wait that long instead of their shipped `for:`. Everything else (every rule's
expression, labels and annotations) is read from deploy/prometheus as shipped. The server listens
on 127.0.0.1 only, on a free port, and keeps its data in `workdir`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

SHIPPED = Path(__file__).resolve().parents[4] / "deploy" / "prometheus"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Prometheus:
    binary: str
    workdir: Path
    targets: dict[str, str]  # the `service` label -> host:port
    interval: str = "1s"
    alert_for: dict[str, str] = field(default_factory=dict)  # alert name -> its `for` here
    shipped: Path = SHIPPED
    port: int = 0
    _process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """The shipped configuration, rules and a targets file, adapted as the module says."""
        config = yaml.safe_load((self.shipped / "prometheus.yml").read_text(encoding="utf-8"))
        config["global"].update(
            scrape_interval=self.interval,
            scrape_timeout=self.interval,
            evaluation_interval=self.interval,
        )
        (self.workdir / "rules").mkdir(parents=True, exist_ok=True)
        renamed = set()
        for path in (self.shipped / "rules").glob("*.rules.yml"):
            rules = yaml.safe_load(path.read_text(encoding="utf-8"))
            for rule in (r for g in rules["groups"] for r in g["rules"]):
                if rule.get("alert") in self.alert_for:
                    rule["for"] = self.alert_for[rule["alert"]]
                    renamed.add(rule["alert"])
            (self.workdir / "rules" / path.name).write_text(yaml.safe_dump(rules, sort_keys=False))
        if missing := set(self.alert_for) - renamed:
            raise ValueError(f"no shipped alert is called {sorted(missing)}")
        (self.workdir / "targets").mkdir(exist_ok=True)
        groups = [{"targets": [t], "labels": {"service": s}} for s, t in self.targets.items()]
        (self.workdir / "targets" / "closeloop.json").write_text(json.dumps(groups, indent=2))
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, *, timeout: float = 30.0) -> None:
        config = self.write_config()
        self.port = self.port or free_port()
        self._log = (self.workdir / "prometheus.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"prometheus exited:\n{self.tail()}")
                try:
                    if client.get(f"{self.url}/-/ready").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prometheus not ready in {timeout:.0f} s:\n{self.tail()}")
                time.sleep(0.2)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
        self._process = self._log = None

    def tail(self, lines: int = 40) -> str:
        path = self.workdir / "prometheus.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _get(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", params=params, timeout=5.0)
        answer.raise_for_status()
        body = answer.json()
        if body["status"] != "success":
            raise RuntimeError(f"{path}: {body}")
        return body["data"]

    def query(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant query's vector: each series' labels (sorted pairs) -> its value."""
        data = self._get("/api/v1/query", query=expr)
        return {
            tuple(sorted(sample["metric"].items())): float(sample["value"][1])
            for sample in data["result"]
        }

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts (pending and firing), as /api/v1/alerts gives them."""
        found: list[dict[str, Any]] = self._get("/api/v1/alerts")["alerts"]
        return found

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (recording and alerting), as /api/v1/rules gives them."""
        groups = self._get("/api/v1/rules")["groups"]
        return [rule for group in groups for rule in group["rules"]]
