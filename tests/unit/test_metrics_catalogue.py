"""docs/metrics.md matches the metric definitions, and every metric follows the conventions:
Prometheus naming (prefix, `_total`, base units in names) and labels bounded by construction
(an allow-list of label names; names that identify a tenant, customer or case only where
`LABEL_EXCEPTIONS` justifies them)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from closeloop_common.services import SERVICES
from closeloop_devtools.metrics_catalogue import (
    BOUNDED_LABELS,
    IDENTIFYING_LABELS,
    LABEL_EXCEPTIONS,
    MetricDoc,
    every_metric,
    label_values,
    render,
)

CATALOGUE = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
METRICS = every_metric()
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Words of a name that say it measures time or size: the name must then end in the base unit.
TIME_WORDS = {"duration", "latency", "delay", "age", "lateness", "timestamp", "time"}
SIZE_WORDS = {"size", "bytes"}
# Units Prometheus does not use: seconds and bytes are the base units, a share is a `_ratio`.
NON_BASE_UNITS = {
    "ms",
    "milliseconds",
    "microseconds",
    "minutes",
    "hours",
    "days",
    "kb",
    "kilobytes",
    "mb",
    "megabytes",
    "percent",
}
# A histogram's name ends in its unit or in what it counts.
HISTOGRAM_UNITS = ("_seconds", "_bytes", "_records", "_requests")
TIME_IN_HELP = re.compile(r"\b(time|latency|duration|age|how long)\b", re.IGNORECASE)


def test_the_checked_in_catalogue_matches_the_metric_definitions() -> None:
    assert CATALOGUE.read_text(encoding="utf-8") == render(), (
        "docs/metrics.md is out of date, run `make metrics-docs`"
    )


def test_the_catalogue_holds_every_metric_the_services_register() -> None:
    # Every module of the four apps, so a metric defined outside a `metrics` module shows too.
    for service in SERVICES:
        importlib.import_module(f"{service.package}.entrypoints.app")
    registered = set()
    for family in REGISTRY.collect():
        if family.name.startswith("closeloop_"):
            suffix = "_total" if family.type == "counter" else ""
            registered.add(family.name + suffix)
    assert registered == {m.name for m in METRICS}


def test_a_metric_is_catalogued_once() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_metric_names_follow_the_prometheus_conventions(metric: MetricDoc) -> None:
    assert metric.name.startswith("closeloop_")
    assert SNAKE_CASE.match(metric.name)
    assert metric.help.strip(), "every metric says what it measures"
    if metric.type == "counter":
        assert metric.name.endswith("_total")
    else:
        assert not metric.name.endswith("_total"), "only counters end in _total"
    words = set(metric.name.split("_"))
    assert not words & NON_BASE_UNITS, "base units only: seconds, bytes, ratios"
    if words & TIME_WORDS:
        assert metric.name.endswith("_seconds"), "a time is in seconds, named so"
    if words & SIZE_WORDS:
        assert metric.name.endswith("_bytes"), "a size is in bytes, named so"
    if metric.type == "histogram":
        assert metric.name.endswith(HISTOGRAM_UNITS), "a histogram names its unit"
        if TIME_IN_HELP.search(metric.help):
            assert metric.name.endswith("_seconds"), "a histogram of durations is in seconds"


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_every_label_is_bounded_by_construction(metric: MetricDoc) -> None:
    excepted = {label for e in LABEL_EXCEPTIONS if metric.name in e.metrics for label in e.labels}
    for label in metric.labels:
        assert SNAKE_CASE.match(label)
        if label in excepted:
            continue
        assert label not in IDENTIFYING_LABELS, f"{label} would mint a series per tenant or case"
        assert label in BOUNDED_LABELS, (
            f"{label} is not in BOUNDED_LABELS: say there what bounds its values"
        )


def test_the_label_rules_name_only_labels_in_use() -> None:
    by_name = {m.name: m for m in METRICS}
    in_use = {label for m in METRICS for label in m.labels}
    assert set(BOUNDED_LABELS) <= in_use
    assert not set(BOUNDED_LABELS) & IDENTIFYING_LABELS
    for exception in LABEL_EXCEPTIONS:
        for name in exception.metrics:
            assert exception.labels <= set(by_name[name].labels)
    for (name, label), values in label_values().items():
        assert label in by_name[name].labels
        assert values
        assert len(values) == len(set(values))


def test_only_the_headline_gauges_carry_a_tenant() -> None:
    with_tenant = {m.name for m in METRICS if "tenant" in m.labels}
    assert with_tenant == {
        "closeloop_scoring_headline_nps",
        "closeloop_scoring_headline_responses",
        "closeloop_scoring_headline_ci_low",
        "closeloop_scoring_headline_ci_high",
        "closeloop_scoring_headline_computed_timestamp_seconds",
    }


@pytest.mark.parametrize("metric", METRICS, ids=lambda m: m.name)
def test_no_metric_takes_a_label_prometheus_reserves(metric: MetricDoc) -> None:
    """`quantile` belongs to summaries and `le` to histograms: promtool refuses them elsewhere,
    and only once a series exists, so the rule is checked here on the definitions."""
    reserved = {"quantile"} - ({"quantile"} if metric.type == "summary" else set())
    reserved |= {"le"} if metric.type != "histogram" else set()
    assert not reserved & set(metric.labels), metric.labels
    assert not any(label.startswith("__") for label in metric.labels), metric.labels
