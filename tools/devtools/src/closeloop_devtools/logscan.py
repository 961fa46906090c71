"""Scans captured service logs for secrets and personal data: what must never be logged.

`scan(paths, needles)` reads every log file (a folder is read file by file) and reports each line
that holds a needle, in any of the spellings a log line could give it: as it is, JSON-escaped
(a JSON log line escapes quotes, backslashes and control characters), percent-encoded (a URL) and
lower-cased (an email normalised). A finding names the needle's label, file and line number,
never the needle itself: the report of a leak must not leak it again.

`secrets_of(env)` lists the secrets a service environment configures: the password of
`DATABASE_URL` (as `user:password@`, the form a URL in a log line would carry; the bare password
may be a common word), the SMTP password and the key of the unsubscribe links. Used by the e2e test
`tests/e2e/test_log_privacy.py`, and meant for the fault run and the soak as well:

    python -m closeloop_devtools.logscan LOG_DIR --needle label=value ... [--env]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

MIN_NEEDLE_LENGTH = 6  # shorter values match by chance (and are no secret)
SECRET_SETTINGS = ("NOTIFIER_SMTP_PASSWORD", "NOTIFIER_UNSUBSCRIBE_SECRET", "NOTIFIER_ERASURE_KEY")


@dataclass(frozen=True, slots=True)
class Finding:
    label: str
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.label}"


def spellings(value: str) -> set[str]:
    """The forms `value` can take in a log line."""
    forms = {value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]}
    forms.add(quote(value, safe=""))
    forms.add(quote(value, safe="@"))
    forms |= {form.lower() for form in forms}
    return {form for form in forms if form}


def secrets_of(env: Mapping[str, str]) -> dict[str, str]:
    """The secrets configured in a service environment, by label."""
    found: dict[str, str] = {}
    database_url = env.get("DATABASE_URL")
    if database_url:
        parts = urlsplit(database_url)
        if parts.password:
            found["DATABASE_URL password"] = f"{parts.username or ''}:{parts.password}@"
    for name in SECRET_SETTINGS:
        value = env.get(name)
        if value:
            found[name] = value
    return found


def _files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path


def scan(paths: Iterable[Path], needles: Mapping[str, str]) -> list[Finding]:
    """Every (needle label, file, line) where a needle occurs in the logs under `paths`."""
    too_short = [label for label, value in needles.items() if len(value) < MIN_NEEDLE_LENGTH]
    if too_short:
        raise ValueError(f"needles shorter than {MIN_NEEDLE_LENGTH} characters: {too_short}")
    forms = {label: spellings(value) for label, value in needles.items()}
    findings: list[Finding] = []
    for file in _files(paths):
        with file.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, start=1):
                lowered = line.lower()
                for label, spelled in forms.items():
                    if any(form in line or form in lowered for form in spelled):
                        findings.append(Finding(label, file, number))
    return findings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-logscan", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="log files or folders")
    parser.add_argument(
        "--needle", action="append", default=[], metavar="LABEL=VALUE", help="a value to find"
    )
    parser.add_argument(
        "--env", action="store_true", help="also the secrets of this environment (secrets_of)"
    )
    args = parser.parse_args(argv)
    needles = dict(item.split("=", 1) for item in args.needle)
    if args.env:
        needles |= secrets_of(os.environ)
    findings = scan(args.paths, needles)
    for finding in findings:
        print(finding)
    print(f"{len(findings)} finding(s) for {len(needles)} needle(s)", file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
