"""The metrics catalogue, `docs/metrics.md`, generated from the metric definitions.

`python -m closeloop_devtools.metrics_catalogue docs/metrics.md` (`make metrics-docs`) imports
`closeloop_common.metrics` and the `metrics` module of every service of
`closeloop_common.services`, so it sees every metric the processes expose, and writes one table
per service: name as exposed, type, labels (with their values where the code defines them as a
closed set), help text. It lives in devtools because it imports every service (libs/common must
not). tests/unit/test_metrics_catalogue.py regenerates it in memory and fails when the
checked-in file differs, and enforces the naming conventions on every metric.

Bounded labels are checked by construction, not by sampling: every label name must be in
`BOUNDED_LABELS`, which says what bounds its values. A label naming a tenant, account, customer,
case, message or person (`IDENTIFYING_LABELS`) is refused, except where `LABEL_EXCEPTIONS`
allows it on named metrics, with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

from prometheus_client.metrics import MetricWrapperBase

from closeloop_common.services import SERVICES
from closeloop_scoring.config import MAX_HEADLINES

COMMON_MODULE = "closeloop_common.metrics"
EVERY_SERVICE = "every service"

# Label names whose values are few by construction, and what bounds them (shown in the catalogue).
BOUNDED_LABELS: dict[str, str] = {
    "method": "the HTTP methods of the service's routes",
    "route": "the template of the route that matched (`/v1/cases/{case_id}`), or `unmatched`: "
    "never the path itself",
    "status": "an HTTP status code (`closeloop_http_requests_total`), otherwise the metric's "
    "closed set of statuses",
    "group": "the service's consumer group, `<KAFKA_TOPIC_PREFIX>.<service>`: one per service",
    "event_type": "an event type of the contracts (`closeloop_common.events.CONTRACTS`), or "
    "`unknown` (a type this build does not know), `undecodable` (poison) or `batch` (a batch "
    "that failed as a whole, before its records were tried one by one)",
    "outcome": "the outcomes listed with the metric, a closed set in the code",
    "kind": "a closed set: `transient` or `error` (handler failures), a message kind "
    "(notifier), a timer kind (orchestrator)",
    "reason": "why the record was dead-lettered: `undecodable` or `handler_failed`",
    "topic": "a topic of `closeloop_common.events.Topic`: the logical name for the consumer lag, "
    "the broker's `<KAFKA_TOPIC_PREFIX>.<topic>` for the outbox",
    "partition": "a partition number of the topic (`KAFKA_TOPIC_PARTITIONS`)",
    "source": "a source's kind (`api`, `typeform`, ...), never a tenant's own source name",
    "case_type": "the case types",
    "priority": "the case priorities",
    "transition": "the kinds of case transitions",
    "clock": "the SLA clocks",
    "within_sla": "`true` or `false`",
    "section": "the sections of an account review pack that scoring answers",
    "loop": "`closed` or `not_closed`",
    "percentile": "the percentiles the loop's impact reports (`quantile` is reserved for summaries)",
    "channel": "`email` or `webhook`",
}

# Label names that would mint a series per tenant, account, customer, case, message or person.
IDENTIFYING_LABELS = frozenset(
    {
        "tenant",
        "tenant_id",
        "account",
        "account_id",
        "customer",
        "customer_id",
        "email",
        "case_id",
        "response_id",
        "invitation_id",
        "event_id",
        "message_id",
        "campaign_id",
        "issue_id",
        "survey_id",
        "owner",
        "user",
        "subject",
    }
)


@dataclass(frozen=True, slots=True)
class LabelException:
    """Labels outside the rules, allowed on these metrics only, for this reason."""

    metrics: frozenset[str]
    labels: frozenset[str]
    reason: str


LABEL_EXCEPTIONS: tuple[LabelException, ...] = (
    LabelException(
        metrics=frozenset(
            {
                "closeloop_scoring_headline_nps",
                "closeloop_scoring_headline_responses",
                "closeloop_scoring_headline_ci_low",
                "closeloop_scoring_headline_ci_high",
                "closeloop_scoring_headline_computed_timestamp_seconds",
            }
        ),
        labels=frozenset({"tenant", "headline"}),
        reason="scoring's headline gauges carry `tenant` and `headline`: one series per "
        f"headline segment an operator configured (`SCORING_HEADLINES`, at most {MAX_HEADLINES}), "
        f"never one per tenant that sends data, so each gauge has at most {MAX_HEADLINES} series",
    ),
)


@dataclass(frozen=True, slots=True)
class MetricDoc:
    name: str  # as exposed: a counter's with `_total`, a histogram's without `_bucket`
    type: str  # counter, gauge, histogram, summary, ...
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]  # a histogram's upper bounds, +Inf left out


@dataclass(frozen=True, slots=True)
class Section:
    title: str  # `every service` or the service's folder name
    module: str
    metrics: tuple[MetricDoc, ...]


def describe(metric: MetricWrapperBase) -> MetricDoc:
    """One metric as Prometheus scrapes it."""
    family: Any = metric  # prometheus_client keeps these on the object, without public getters
    kind = str(family._type)
    name = str(family._name)
    bounds = getattr(family, "_upper_bounds", ())
    return MetricDoc(
        name=f"{name}_total" if kind == "counter" else name,
        type=kind,
        help=str(family._documentation),
        labels=tuple(family._labelnames),
        buckets=tuple(float(b) for b in bounds if not math.isinf(b)),
    )


def metrics_of(module: ModuleType) -> list[MetricWrapperBase]:
    """The metrics a module defines, in the order it defines them."""
    return [m for m in vars(module).values() if isinstance(m, MetricWrapperBase)]


def sections() -> list[Section]:
    """Every metric, by the module that defines it: the common ones, then each service's."""
    modules = [(EVERY_SERVICE, COMMON_MODULE)]
    modules += [(s.directory, f"{s.package}.metrics") for s in SERVICES]
    seen: set[int] = set()
    found: list[Section] = []
    for title, module_name in modules:
        docs = []
        for metric in metrics_of(importlib.import_module(module_name)):
            if id(metric) not in seen:  # a module that imports another's metric lists it once
                seen.add(id(metric))
                docs.append(describe(metric))
        found.append(Section(title, module_name, tuple(docs)))
    return found


def every_metric() -> list[MetricDoc]:
    return [m for s in sections() for m in s.metrics]


def label_values() -> dict[tuple[str, str], tuple[str, ...]]:
    """(metric, label) -> its values, where the code defines them as a closed set."""
    from closeloop_common.events import Category, Topic
    from closeloop_ingest.domain.sources.base import Kind as SourceKind
    from closeloop_ingest.service_layer.intake import Status
    from closeloop_ingest.service_layer.invitations import InvitationStatus
    from closeloop_notifier.campaign_views import CAMPAIGN_MESSAGE_STATUSES
    from closeloop_notifier.domain.change_summary import CAMPAIGN_STATUSES
    from closeloop_notifier.domain.kinds import Kind as MessageKind
    from closeloop_orchestrator.adapters.tables import ISSUE_STATUSES
    from closeloop_orchestrator.domain import silence
    from closeloop_orchestrator.domain.case_commands import Priority
    from closeloop_orchestrator.domain.impact import QUANTILES
    from closeloop_orchestrator.domain.lifecycle import TransitionKind
    from closeloop_orchestrator.domain.sla import ClockName, TimerKind
    from closeloop_orchestrator.service_layer.review_pack import SCORING_SECTIONS

    # `api` is ingest's own write API; `unknown` a webhook path that names no source.
    sources = ("api", *get_args(SourceKind), "unknown")
    categories = tuple(c.value for c in Category)
    case_types = (*categories, silence.CASE_TYPE)
    priorities = tuple(p.value for p in Priority)
    channels = ("email", "webhook")
    loops = ("closed", "not_closed")
    return {
        ("closeloop_consumer_lag_records", "topic"): tuple(t.value for t in Topic),
        ("closeloop_ingest_deliveries_total", "source"): sources,
        ("closeloop_ingest_responses_total", "source"): sources,
        ("closeloop_ingest_responses_total", "status"): (*get_args(Status), "invalid"),
        ("closeloop_ingest_invitations_total", "outcome"): (*get_args(InvitationStatus), "invalid"),
        ("closeloop_ingest_fetches_total", "source"): sources,
        ("closeloop_cases_opened_total", "case_type"): case_types,
        ("closeloop_cases_open", "case_type"): case_types,
        ("closeloop_structural_issues", "status"): ISSUE_STATUSES,
        ("closeloop_cases_open", "priority"): priorities,
        ("closeloop_case_transitions_total", "transition"): tuple(t.value for t in TransitionKind),
        ("closeloop_case_sla_alerts_total", "clock"): tuple(c.value for c in ClockName),
        ("closeloop_case_sla_alerts_total", "kind"): tuple(k.value for k in TimerKind),
        ("closeloop_case_time_to_first_contact_seconds", "case_type"): case_types,
        ("closeloop_case_first_contacts_total", "case_type"): case_types,
        ("closeloop_case_first_contacts_total", "within_sla"): ("true", "false"),
        ("closeloop_review_pack_sections_unavailable_total", "section"): tuple(SCORING_SECTIONS),
        ("closeloop_loop_cases", "loop"): loops,
        ("closeloop_loop_resurvey_invitations", "loop"): loops,
        ("closeloop_loop_resurvey_responses", "loop"): loops,
        ("closeloop_loop_resurvey_response_ratio", "loop"): loops,
        ("closeloop_loop_resurvey_score_change_mean", "loop"): loops,
        ("closeloop_loop_time_to_first_contact_seconds", "percentile"): tuple(
            f"{q * 100:g}" for q in QUANTILES
        ),
        ("closeloop_loop_first_contact_within_sla_ratio", "priority"): priorities,
        ("closeloop_scoring_responses_aggregated_total", "outcome"): ("changed", "unchanged"),
        ("closeloop_scoring_root_causes_applied_total", "outcome"): ("changed", "unchanged"),
        ("closeloop_notifier_messages_total", "kind"): tuple(k.value for k in MessageKind),
        ("closeloop_notifier_messages_total", "channel"): channels,
        ("closeloop_notifier_send_duration_seconds", "channel"): channels,
        ("closeloop_notifier_messages_waiting", "status"): ("pending", "sending"),
        ("closeloop_notifier_campaigns", "status"): tuple(CAMPAIGN_STATUSES),
        ("closeloop_notifier_campaign_messages", "status"): tuple(CAMPAIGN_MESSAGE_STATUSES),
    }


# -- rendering ----------------------------------------------------------------------------------

INTRODUCTION = """\
# Metrics

Generated by `make metrics-docs` (`python -m closeloop_devtools.metrics_catalogue
docs/metrics.md`) from the metric definitions: `closeloop_common.metrics` and each service's
`metrics` module. Do not edit it by hand: tests/unit/test_metrics_catalogue.py fails when it
and the code differ, and holds every metric to the conventions below.

Every service serves its metrics on `/metrics` (or on `METRICS_HOST:METRICS_PORT` when set).
There is no service label: one process is one service, and Prometheus adds `job` and
`instance` when it scrapes. Names follow Prometheus' conventions: the `closeloop_` prefix, base
units in the name (`_seconds`, `_bytes`; counts name what they count, `_records`,
`_requests`), counters end in `_total` (prometheus_client also exposes a `_created` series
each), and a histogram `x` is exposed as `x_bucket{le}`, `x_sum` and `x_count` (its buckets are
listed once here). Labels are bounded by construction: the [labels](#labels) section says what
bounds each, and where the code defines the values as a closed set they are listed with the
metric. The consumer metrics have series only in the services that consume events.
"""

LAG_NOTE = """\
Lag, to alert on: `closeloop_consumer_lag_records` (records a group has not handled yet, per
topic and partition) and `closeloop_outbox_oldest_pending_age_seconds` (how long the oldest
event waits to be published; it keeps growing while the broker is down).
"""


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _labels_cell(metric: MetricDoc, values: dict[tuple[str, str], tuple[str, ...]]) -> str:
    parts = []
    for label in metric.labels:
        known = values.get((metric.name, label))
        listed = f": {', '.join(f'`{v}`' for v in known)}" if known else ""
        parts.append(f"`{label}`{listed}")
    return "<br>".join(parts) if parts else "none"


def _type_cell(metric: MetricDoc) -> str:
    if metric.type != "histogram":
        return metric.type
    return f"histogram (buckets {', '.join(_number(b) for b in metric.buckets)})"


def render() -> str:
    """The whole of docs/metrics.md."""
    values = label_values()
    lines = [INTRODUCTION, LAG_NOTE]
    for section in sections():
        heading = "Every service" if section.title == EVERY_SERVICE else f"`{section.title}`"
        lines += [f"## {heading}", "", f"Defined in `{section.module}`.", ""]
        lines += ["| Metric | Type | Labels | Meaning |", "| --- | --- | --- | --- |"]
        for m in section.metrics:
            lines.append(
                f"| `{m.name}` | {_type_cell(m)} | {_labels_cell(m, values)} | {_cell(m.help)} |"
            )
        lines.append("")
    lines += ["## Labels", "", "| Label | What bounds its values |", "| --- | --- |"]
    lines += [f"| `{name}` | {_cell(bound)} |" for name, bound in BOUNDED_LABELS.items()]
    lines += [
        "",
        "A label naming a tenant, account, customer, case, message or person ("
        + ", ".join(f"`{n}`" for n in sorted(IDENTIFYING_LABELS))
        + ") is refused by the test, with these exceptions:",
        "",
    ]
    for exception in LABEL_EXCEPTIONS:
        metrics = ", ".join(f"`{m}`" for m in sorted(exception.metrics))
        labels = ", ".join(f"`{n}`" for n in sorted(exception.labels))
        lines.append(f"- {labels} on {metrics}: {_cell(exception.reason)}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop_devtools.metrics_catalogue")
    parser.add_argument("out", type=Path, help="the file to write, docs/metrics.md")
    args = parser.parse_args(argv)
    args.out.write_text(render(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
