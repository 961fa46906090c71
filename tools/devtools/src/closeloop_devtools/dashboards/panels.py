"""A small model of a Grafana dashboard (rows, panels, PromQL queries, template variables) and its
rendering to the JSON that Grafana's file provisioning reads (schemaVersion 39, Grafana 11).

Panels flow left to right, 24 grid units to a line; a `Row` starts a new line with a row header.
Every query reads the Prometheus data source by its provisioned uid (`prometheus`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_WIDTH = 24

PanelKind = Literal["timeseries", "stat", "gauge", "bargauge", "table"]


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL expression. `legend` names the series (or the column, in a table); `unit`
    overrides the panel's unit for this query's series."""

    expr: str
    legend: str = ""
    unit: str | None = None


@dataclass(frozen=True, slots=True)
class Threshold:
    """From `value` on (None: from the lowest value), the colour is `color`."""

    value: float | None
    color: str


@dataclass(frozen=True, slots=True)
class ValueText:
    """A gauge value shown as a word (0 -> OK, 1 -> DOWN) in a colour."""

    value: int
    text: str
    color: str


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str
    kind: PanelKind = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    decimals: int | None = None
    thresholds: tuple[Threshold, ...] = ()
    value_texts: tuple[ValueText, ...] = ()
    stacked: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    title: str


@dataclass(frozen=True, slots=True)
class Variable:
    """A query variable over one label of one metric (`label_values`), multi-valued, with All."""

    name: str
    label: str
    query: str  # label_values(<selector>, <label>)
    description: str


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    items: tuple[Panel | Row, ...]
    variables: tuple[Variable, ...] = ()
    time_from: str = "now-24h"


def _ref(index: int) -> str:
    return chr(ord("A") + index)


def _targets(panel: Panel) -> list[dict[str, Any]]:
    instant = panel.kind != "timeseries"
    return [
        {
            "refId": _ref(i),
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "range": not instant,
            "instant": instant,
            **({"format": "table"} if panel.kind == "table" else {}),
        }
        for i, q in enumerate(panel.queries)
    ]


def _defaults(panel: Panel) -> dict[str, Any]:
    steps = panel.thresholds or (Threshold(None, "green"),)
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
        "thresholds": {
            "mode": "absolute",
            "steps": [{"value": t.value, "color": t.color} for t in steps],
        },
        "mappings": [
            {
                "type": "value",
                "options": {str(v.value): {"text": v.text, "color": v.color, "index": i}},
            }
            for i, v in enumerate(panel.value_texts)
        ],
    }
    for key, value in (("min", panel.min), ("max", panel.max), ("decimals", panel.decimals)):
        if value is not None:
            defaults[key] = value
    if panel.kind == "timeseries":
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if panel.stacked else 0,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "thresholdsStyle": {"mode": "dashed" if panel.thresholds else "off"},
        }
    return defaults


def _overrides(panel: Panel) -> list[dict[str, Any]]:
    """Per-query units: by query in graphs, by column name (the legend) in tables."""
    overrides = []
    for i, q in enumerate(panel.queries):
        if q.unit is None:
            continue
        matcher = (
            {"id": "byName", "options": q.legend}
            if panel.kind == "table"
            else {"id": "byFrameRefID", "options": _ref(i)}
        )
        overrides.append({"matcher": matcher, "properties": [{"id": "unit", "value": q.unit}]})
    return overrides


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if panel.kind == "timeseries":
        return {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    if panel.kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "background", "graphMode": "none",
                "textMode": "auto", "justifyMode": "auto", "orientation": "auto"}  # fmt: skip
    if panel.kind == "gauge":
        return {"reduceOptions": reduce, "showThresholdLabels": False,
                "showThresholdMarkers": True, "orientation": "auto"}  # fmt: skip
    if panel.kind == "bargauge":
        return {"reduceOptions": reduce, "displayMode": "gradient", "orientation": "horizontal",
                "showUnfilled": True}  # fmt: skip
    return {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}


def _transformations(panel: Panel) -> list[dict[str, Any]]:
    """A table joins its instant queries into one row per series, one column per query."""
    if panel.kind != "table":
        return []
    renames = {f"Value #{_ref(i)}": q.legend for i, q in enumerate(panel.queries)}
    return [
        {"id": "merge", "options": {}},
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True}, "renameByName": renames},
        },
    ]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "targets": _targets(panel),
        "fieldConfig": {"defaults": _defaults(panel), "overrides": _overrides(panel)},
        "options": _options(panel),
    }
    if transformations := _transformations(panel):
        rendered["transformations"] = transformations
    return rendered


def _variable_json(variable: Variable) -> dict[str, Any]:
    return {
        "name": variable.name,
        "label": variable.label,
        "description": variable.description,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": variable.query,
        "query": {"qryType": 1, "query": variable.query, "refId": "PrometheusVariableQueryEditor"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "hide": 0,
    }


def _layout(items: tuple[Panel | Row, ...]) -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    x = y = line_height = 0
    for panel_id, item in enumerate(items, start=1):
        if isinstance(item, Row):
            y += line_height
            x = line_height = 0
            panels.append({
                "id": panel_id, "type": "row", "title": item.title, "collapsed": False,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}, "panels": [],
            })  # fmt: skip
            y += 1
            continue
        if x + item.width > GRID_WIDTH:
            y += line_height
            x = line_height = 0
        panels.append(_panel_json(item, panel_id, x, y))
        x += item.width
        line_height = max(line_height, item.height)
    return panels


def render(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model."""
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["closeloop"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "timezone": "browser",
        "refresh": "1m",
        "time": {"from": dashboard.time_from, "to": "now"},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "Closeloop dashboards",
                "type": "dashboards",
                "tags": ["closeloop"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
            }
        ],
        "templating": {"list": [_variable_json(v) for v in dashboard.variables]},
        "panels": _layout(dashboard.items),
    }
