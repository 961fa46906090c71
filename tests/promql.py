"""PromQL as the dashboard and rule tests read it: which metric names an expression selects, and
which series the services export (their Prometheus registries, without running them)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from closeloop_common.services import SERVICES

# Series Prometheus makes itself for every target.
SCRAPE_SERIES = {"up"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "inf", "nan"}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, keywords or labels)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*", text):
        followed_by_call = text[match.end() :].lstrip().startswith("(")
        if not followed_by_call and match.group().lower() not in _KEYWORDS:
            names.add(match.group())
    return names


def exported_series() -> set[str]:
    """Every series name the four services expose on /metrics."""
    for package in ("closeloop_common", *(s.package for s in SERVICES)):
        importlib.import_module(f"{package}.metrics")
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in _SUFFIXES.get(family.type, ("",))
    }


def recording_rules(path: Path) -> set[str]:
    """The names the recording rules of a rules file record."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return {r["record"] for g in groups for r in g["rules"] if "record" in r}
