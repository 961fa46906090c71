"""The checked-in contracts/ must match the event models: CRMs build against those files."""

from __future__ import annotations

import json
from pathlib import Path

from closeloop_common.contracts import rendered_files
from closeloop_common.events import CONTRACTS

CONTRACTS_DIR = Path(__file__).resolve().parents[4] / "contracts"


def test_checked_in_contracts_match_the_event_models() -> None:
    expected = rendered_files()
    stale = [
        path
        for path, content in expected.items()
        if not (CONTRACTS_DIR / path).exists()
        or (CONTRACTS_DIR / path).read_text(encoding="utf-8") != content
    ]
    assert not stale, f"contracts/ is out of date, run `make contracts`: {stale}"
    on_disk = {str(p.relative_to(CONTRACTS_DIR)) for p in CONTRACTS_DIR.rglob("*.json")}
    assert on_disk == set(expected), f"unexpected files in contracts/: {on_disk - set(expected)}"


def test_every_contract_is_a_message_of_its_topic_in_asyncapi() -> None:
    document = json.loads((CONTRACTS_DIR / "asyncapi.json").read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    for contract in CONTRACTS:
        channel = document["channels"][contract.TOPIC.value]
        assert contract.__name__ in channel["messages"]
        message = document["components"]["messages"][contract.__name__]
        assert message["name"] == contract.EVENT_TYPE
        schema_ref = message["payload"]["schema"]["$ref"]
        schema = json.loads((CONTRACTS_DIR / schema_ref).read_text(encoding="utf-8"))
        assert schema["properties"]["type"]["const"] == contract.EVENT_TYPE
