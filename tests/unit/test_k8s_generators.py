"""The generators of deploy/k8s (closeloop_devtools.k8s_*): known answers, and files in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from closeloop_common.events import Topic
from closeloop_devtools import k8s_dashboards, k8s_rules, k8s_schemas, k8s_topics

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "k8s" / "base"

RULES = """\
# a comment
groups:
  - name: example
    rules:
      - alert: Down
        expr: >-
          up == 0

        labels: {severity: critical}
"""


def test_prometheus_rule_wraps_the_rules_file_unchanged() -> None:
    rendered = k8s_rules.render(RULES)
    resource = yaml.safe_load(rendered)
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    assert resource["metadata"] == {"name": "closeloop"}
    assert resource["spec"] == yaml.safe_load(RULES)
    assert resource["spec"]["groups"][0]["rules"][0]["expr"] == "up == 0"
    assert "  # a comment\n  groups:\n" in rendered


def test_a_file_without_groups_is_no_rules_file() -> None:
    with pytest.raises(ValueError, match="groups"):
        k8s_rules.render("rules: []\n")


def test_prometheus_rule_resource_is_in_step_with_the_rules_file() -> None:
    if not k8s_rules.RULES_FILE.exists():
        pytest.skip(
            "deploy/prometheus/rules/closeloop.rules.yml is not on this branch yet: "
            "generate the resource with `python -m closeloop_devtools.k8s_rules` once it is"
        )
    assert k8s_rules.main(["--check"]) == 0, "run python -m closeloop_devtools.k8s_rules"
    resources = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert "prometheus-rule.yaml" in resources


def test_dashboards_configmap_holds_each_dashboard_unchanged() -> None:
    dashboards = {
        "b.json": '{\n  "title": "Closeloop: NPS # ok",\n  "x": "  spaced"\n}\n',
        "a.json": '  {"title": "Zażółć", "panels": []}',  # leading spaces, no final newline
    }
    resource = yaml.safe_load(k8s_dashboards.render(dashboards))
    assert resource["kind"] == "ConfigMap"
    assert resource["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert resource["data"] == dashboards
    assert list(resource["data"]) == ["a.json", "b.json"]


def test_grafana_dashboards_configmap_is_in_step_with_the_dashboards() -> None:
    if not list(k8s_dashboards.DASHBOARDS_DIR.glob("*.json")):
        pytest.skip(
            "deploy/grafana/dashboards is not on this branch yet: generate the ConfigMap with "
            "`python -m closeloop_devtools.k8s_dashboards` once it is"
        )
    assert k8s_dashboards.main(["--check"]) == 0, "run python -m closeloop_devtools.k8s_dashboards"
    resources = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert "grafana-dashboards.yaml" in resources


def test_kafka_topics_are_in_step_with_the_topic_definitions() -> None:
    assert k8s_topics.main(["--check"]) == 0, "run python -m closeloop_devtools.k8s_topics"


def test_kafka_topics_keep_the_record_topics_forever() -> None:
    topics = {
        t["spec"]["topicName"]: t["spec"]
        for t in yaml.safe_load_all(k8s_topics.TOPICS_FILE.read_text())
    }
    assert set(topics) == {f"closeloop.{t.value}" for t in Topic}
    retention = {name: spec["config"]["retention.ms"] for name, spec in topics.items()}
    assert retention == {
        "closeloop.responses": -1,
        "closeloop.cases": -1,
        "closeloop.changes": -1,
        "closeloop.nps": 14 * 24 * 3600 * 1000,
        "closeloop.notifications": 14 * 24 * 3600 * 1000,
        # Erasure requests name the person: not forever (docs/privacy.md).
        "closeloop.privacy": 14 * 24 * 3600 * 1000,
        "closeloop.deadletter": 30 * 24 * 3600 * 1000,
    }
    assert {(s["partitions"], s["replicas"]) for s in topics.values()} == {(6, 3)}
    assert {s["config"]["min.insync.replicas"] for s in topics.values()} == {2}


def test_kafka_topics_use_the_configured_prefix_and_partitions() -> None:
    config = yaml.safe_load((BASE / "configmap.yaml").read_text())["data"]
    assert config["KAFKA_TOPIC_PREFIX"] == k8s_topics.PREFIX
    assert int(config["KAFKA_TOPIC_PARTITIONS"]) == k8s_topics.PARTITIONS
    assert int(config["KAFKA_REPLICATION_FACTOR"]) == k8s_topics.REPLICAS


def test_standalone_schema_copies_in_what_it_references_transitively() -> None:
    definitions: dict[str, Any] = {
        "A": {"properties": {"b": {"$ref": "#/$defs/B"}}},
        "B": {"properties": {"a": {"$ref": "#/$defs/A"}}},  # a cycle
        "C": {"type": "string"},  # not referenced
    }
    kind = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://kubernetes.io/api/x",
        "properties": {"spec": {"$ref": "/api/_definitions.json#/$defs/A"}},
    }
    schema = k8s_schemas.standalone(kind, definitions)
    assert schema == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "properties": {"spec": {"$ref": "#/$defs/A"}},
        "$defs": {
            "A": {"properties": {"b": {"$ref": "#/$defs/B"}}},
            "B": {"properties": {"a": {"$ref": "#/$defs/A"}}},
        },
    }


def test_strict_closes_objects_with_properties_unless_they_keep_unknown_fields() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"x": {"type": "string"}}},
            "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    strict = k8s_schemas.strict(schema)
    assert strict["additionalProperties"] is False
    assert strict["properties"]["spec"]["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["config"]
    assert strict["properties"]["labels"]["additionalProperties"] == {"type": "string"}


def test_descriptions_go_but_a_property_called_description_stays() -> None:
    schema = {
        "description": "drop me",
        "properties": {"description": {"type": "string", "description": "drop me too"}},
    }
    assert k8s_schemas.without_descriptions(schema) == {
        "properties": {"description": {"type": "string"}}
    }
