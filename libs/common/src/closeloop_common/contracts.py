"""Publishes the event contracts for the CRMs and tools that consume them.

`python -m closeloop_common.contracts contracts` writes, from the models in `events.py`:
- `contracts/schemas/<event type>.json`: a JSON Schema (draft 2020-12) of each whole CloudEvent
  (envelope and data), with `$id` equal to the event's `dataschema` URN;
- `contracts/asyncapi.json`: an AsyncAPI 3.0 document of the topics, keys and messages.
A test regenerates both in memory and fails when the checked-in files differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from closeloop_common.events import (
    CONTRACTS,
    STRUCTURED_CONTENT_TYPE,
    CloudEvent,
    EventData,
    Topic,
    schema_urn,
)

JSON_SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"
DEFAULT_PARTITIONS = 6

TOPIC_DESCRIPTIONS = {
    Topic.RESPONSES: "Accepted survey responses (first delivery of each response id). Producer: ingest.",
    Topic.NPS: (
        "NPS of the configured headline segments when it moves (nps.changed.v1); nps.updated.v1 "
        "is deprecated and no longer published. Producer: scoring."
    ),
    Topic.CASES: "Follow-up cases opened for responses. Producer: loop-orchestrator.",
    Topic.NOTIFICATIONS: (
        "Messages sent, or not sent, to customers and to the team (one outcome per message). "
        "Producer: notifier."
    ),
    Topic.CHANGES: (
        "Structural issues done or rejected, with whom to tell and what (`change.summary`). "
        "Producer: loop-orchestrator (the outer loop)."
    ),
    Topic.PRIVACY: (
        "Erasure requests (GDPR article 17) and each service's completion; they carry the "
        "subject's identifiers, so this topic keeps 14 days only. Producers: ingest (requests), "
        "every service (completions)."
    ),
    Topic.DEADLETTER: (
        "Records a consumer could not handle: the original key and value, with headers "
        "closeloop.dlq.{topic,partition,offset,group,reason,error,failed_at}."
    ),
}
PRODUCERS = {
    Topic.RESPONSES: "ingest",
    Topic.NPS: "scoring",
    Topic.CASES: "loop-orchestrator",
    Topic.NOTIFICATIONS: "notifier",
    Topic.CHANGES: "loop-orchestrator",
    Topic.PRIVACY: "every service",
}


def schema_filename(contract: type[EventData]) -> str:
    return f"{contract.EVENT_TYPE}.json"


def json_schema(contract: type[EventData]) -> dict[str, Any]:
    schema = CloudEvent[contract].model_json_schema(mode="serialization")  # type: ignore[valid-type]
    properties = schema["properties"]
    properties["type"] = {**properties["type"], "const": contract.EVENT_TYPE}
    properties["dataschema"] = {
        **properties["dataschema"],
        "const": schema_urn(contract.EVENT_TYPE),
    }
    schema["required"] = sorted(set(schema.get("required", [])) | {"type", "dataschema"})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_urn(contract.EVENT_TYPE),
        **schema,
        "title": contract.EVENT_TYPE,
        "description": (contract.__doc__ or "").strip(),
    }


def asyncapi_document(prefix: str = "closeloop") -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in Topic:
        topic_messages = {}
        for contract in (c for c in CONTRACTS if c.TOPIC is topic):
            name = contract.__name__
            messages[name] = {
                "name": contract.EVENT_TYPE,
                "title": name,
                "summary": (contract.__doc__ or "").strip(),
                "contentType": STRUCTURED_CONTENT_TYPE.split(";")[0],
                "payload": {
                    "schemaFormat": JSON_SCHEMA_FORMAT,
                    "schema": {"$ref": f"./schemas/{schema_filename(contract)}"},
                },
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": contract.KEY_DESCRIPTION},
                        "bindingVersion": "0.5.0",
                    }
                },
            }
            topic_messages[name] = {"$ref": f"#/components/messages/{name}"}
        channels[topic.value] = {
            "address": topic.address(prefix),
            "description": TOPIC_DESCRIPTIONS[topic],
            "messages": topic_messages,
            "bindings": {
                "kafka": {
                    "topic": topic.address(prefix),
                    "partitions": DEFAULT_PARTITIONS,
                    "bindingVersion": "0.5.0",
                }
            },
        }
        if topic in PRODUCERS:
            operations[f"publish_{topic.value}"] = {
                "action": "send",
                "summary": f"{PRODUCERS[topic]} publishes to {topic.address(prefix)}",
                "channel": {"$ref": f"#/channels/{topic.value}"},
                "messages": [
                    {"$ref": f"#/channels/{topic.value}/messages/{n}"} for n in topic_messages
                ],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Closeloop events",
            "version": "1.0.0",
            "description": (
                "Events of the Closeloop NPS closed loop. Every record value is a CloudEvents 1.0 "
                "event in structured mode (JSON, header content-type: "
                f"{STRUCTURED_CONTENT_TYPE}). Extension attributes: `tenantid` (the tenant), "
                "`partitionkey` (the record key) and, when the producer traces, `traceparent` "
                "and `tracestate` (W3C Trace Context of the work that emitted the event; the "
                "CloudEvents distributed tracing extension; absent otherwise). Topic names "
                "start with KAFKA_TOPIC_PREFIX "
                f"(default `{prefix}`). Dispatch on `type`: a breaking change is a new type "
                "version published beside the old one, never an edit."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "the broker started by `make infra-up`",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered_files(prefix: str = "closeloop") -> dict[str, str]:
    """Relative path -> file content of everything `contracts/` holds."""
    files = {
        f"schemas/{schema_filename(c)}": json.dumps(json_schema(c), indent=2, ensure_ascii=False)
        + "\n"
        for c in CONTRACTS
    }
    files["asyncapi.json"] = (
        json.dumps(asyncapi_document(prefix), indent=2, ensure_ascii=False) + "\n"
    )
    return files


def write(out_dir: Path) -> list[Path]:
    written = []
    for relative, content in rendered_files().items():
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "contracts")):
        print(path)
