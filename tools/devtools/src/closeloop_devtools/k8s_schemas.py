"""The JSON Schemas that kubeconform validates deploy/k8s against, offline (deploy/k8s/schemas/).

kubeconform would download its schemas from the internet at every run; CI has no such access, so
the schemas of the kinds the manifests use are kept in the repository, made by this module from
packages of the registries the project uses (deploy/k8s/schemas/README.md names the versions):

- Kubernetes' own kinds from the `-local-strict` schemas that PyPI's `kubernetes-validate` wheel
  carries (generated from Kubernetes' OpenAPI document): each kind's schema is made standalone by
  copying in the definitions it references (`$defs`), as kubeconform needs.
- ServiceMonitor and PrometheusRule from the CustomResourceDefinitions in the Go module
  `github.com/prometheus-operator/prometheus-operator` (example/prometheus-operator-crd), converted
  as kubeconform's openapi2jsonschema does: the version's `openAPIV3Schema`, strict (an object
  with `properties` accepts no other key unless it says so).
- Strimzi's KafkaTopic (kafka.strimzi.io/v1beta2) from `KAFKA_TOPIC` below: no registry package
  ships Strimzi's CRDs, so its schema is written here from the API classes of Maven Central's
  `io.strimzi:api` (KafkaTopicSpec: fields, minimum and maximum).

Descriptions are left out (kubeconform does not show them); files are named as kubeconform's
`{{ .ResourceKind }}{{ .KindSuffix }}.json` template expects.

    python -m closeloop_devtools.k8s_schemas \\
        --kubernetes-validate-wheel kubernetes_validate-1.37.0-py3-none-any.whl \\
        --prometheus-operator-dir "$(go mod download -json \\
            github.com/prometheus-operator/prometheus-operator@v0.85.0 | jq -r .Dir)"
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[4]
SCHEMAS_DIR = ROOT / "deploy" / "k8s" / "schemas"
KUBERNETES_VERSION = "v1.34.0"

# Kubernetes' kinds the manifests use, as kubeconform names their schemas.
NATIVE_KINDS = (
    "configmap-v1",
    "service-v1",
    "deployment-apps-v1",
    "job-batch-v1",
    "networkpolicy-networking-v1",
    "poddisruptionbudget-policy-v1",
    "horizontalpodautoscaler-autoscaling-v2",
)
# File in example/prometheus-operator-crd -> the schema's name.
PROMETHEUS_OPERATOR_CRDS = {
    "monitoring.coreos.com_servicemonitors.yaml": "servicemonitor-monitoring-v1",
    "monitoring.coreos.com_prometheusrules.yaml": "prometheusrule-monitoring-v1",
}

Schema = dict[str, Any]

# io.strimzi:api 0.48.0, io.strimzi.api.kafka.model.topic.KafkaTopicSpec. `status` is the Topic
# Operator's to write and is not checked.
KAFKA_TOPIC: Schema = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "enum": ["kafka.strimzi.io/v1beta2"]},
        "kind": {"type": "string", "enum": ["KafkaTopic"]},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string"},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
    "additionalProperties": False,
}

DEFINITION_REF = re.compile(r"^(?:/api/_definitions\.json)?#/\$defs/(.+)$")


def without_descriptions(node: Any, *, names: bool = False) -> Any:
    """`node` without its `description` keywords (a property called `description` stays)."""
    if isinstance(node, dict):
        return {
            key: without_descriptions(value, names=key in ("properties", "$defs") and not names)
            for key, value in node.items()
            if names or key != "description"
        }
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def standalone(kind: Schema, definitions: Schema) -> Schema:
    """`kind` with the definitions it references, directly or not, copied in as `$defs`."""
    needed: dict[str, Any] = {}

    def localize(node: Any) -> Any:
        if isinstance(node, dict):
            copy = {key: localize(value) for key, value in node.items()}
            ref = node.get("$ref")
            if isinstance(ref, str):
                match = DEFINITION_REF.match(ref)
                if match is None:
                    raise ValueError(f"unexpected $ref {ref!r}")
                name = match.group(1)
                copy["$ref"] = f"#/$defs/{name}"
                if name not in needed:
                    needed[name] = None  # placeholder first: definitions may refer to each other
                    needed[name] = localize(definitions[name])
            return copy
        if isinstance(node, list):
            return [localize(item) for item in node]
        return node

    result: Schema = {
        key: localize(value) for key, value in kind.items() if key not in ("$id", "$schema")
    }
    result["$defs"] = dict(sorted(needed.items()))
    return {"$schema": kind["$schema"], **result}


def strict(node: Any) -> Any:
    """As kubeconform's openapi2jsonschema --strict: objects with `properties` are closed."""
    if isinstance(node, dict):
        copy = {key: strict(value) for key, value in node.items()}
        if (
            "properties" in copy
            and "additionalProperties" not in copy
            and not copy.get("x-kubernetes-preserve-unknown-fields")
        ):
            copy["additionalProperties"] = False
        return copy
    if isinstance(node, list):
        return [strict(item) for item in node]
    return node


def crd_schema(crd: Schema, version: str) -> Schema:
    """The JSON Schema of one version of a CustomResourceDefinition."""
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            openapi: Schema = served["schema"]["openAPIV3Schema"]
            return {"$schema": "http://json-schema.org/draft-07/schema#", **strict(openapi)}
    raise ValueError(f"{crd['metadata']['name']} has no version {version}")


def native_schemas(wheel: Path) -> dict[str, Schema]:
    folder = f"kubernetes_validate/kubernetes-json-schema/{KUBERNETES_VERSION}-local-strict"
    with zipfile.ZipFile(wheel) as archive:
        definitions = json.loads(archive.read(f"{folder}/_definitions.json"))["$defs"]
        return {
            name: standalone(json.loads(archive.read(f"{folder}/{name}.json")), definitions)
            for name in NATIVE_KINDS
        }


def prometheus_operator_schemas(module_dir: Path) -> dict[str, Schema]:
    schemas = {}
    for file, name in PROMETHEUS_OPERATOR_CRDS.items():
        crd = yaml.safe_load(
            (module_dir / "example" / "prometheus-operator-crd" / file).read_text()
        )
        schemas[name] = crd_schema(crd, "v1")
    return schemas


def write(schemas: dict[str, Schema], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, schema in sorted(schemas.items()):
        text = json.dumps(without_descriptions(schema), indent=1, sort_keys=True)
        (out / f"{name}.json").write_text(text + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m closeloop_devtools.k8s_schemas")
    parser.add_argument("--kubernetes-validate-wheel", type=Path, required=True)
    parser.add_argument("--prometheus-operator-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=SCHEMAS_DIR)
    args = parser.parse_args(argv)
    schemas = native_schemas(args.kubernetes_validate_wheel)
    schemas |= prometheus_operator_schemas(args.prometheus_operator_dir)
    schemas["kafkatopic-kafka-v1beta2"] = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        **KAFKA_TOPIC,
    }
    write(schemas, args.out)
    print(f"wrote {len(schemas)} schemas to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
