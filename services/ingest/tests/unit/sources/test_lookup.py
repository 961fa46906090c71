"""JSONPath refs: the direct walk of simple paths agrees with the general JSONPath match."""

from __future__ import annotations

from typing import Any

import jsonpath
import pytest

from closeloop_ingest.domain.sources.base import lookup

DOCUMENT: dict[str, Any] = {
    "form_response": {
        "hidden": {"customer_id": "c-1", "account-id": "a-9", "zero": 0, "none": None},
        "answers": [{"number": 9}, {"text": "Żółw"}],
    },
    "list": [[1, 2], [3]],
}


@pytest.mark.parametrize(
    "path",
    [
        "$.form_response.hidden.customer_id",
        "$.form_response.hidden.account-id",
        "$.form_response.hidden.zero",
        "$.form_response.hidden.none",
        "$.form_response.hidden.missing",
        "$.form_response.answers[1].text",
        "$.form_response.answers[5].text",
        "$.form_response.hidden[0]",
        "$.list[0][1]",
        "$.form_response.answers[0].number.deeper",
        "$",
    ],
)
def test_a_simple_path_finds_what_jsonpath_finds(path: str) -> None:
    match = jsonpath.match(path, DOCUMENT)
    assert lookup(DOCUMENT, path) == (None if match is None else match.obj)


def test_a_general_path_still_works() -> None:
    path = "$.form_response.answers[?@.text].text"
    assert lookup(DOCUMENT, path) == "Żółw"
    assert lookup(DOCUMENT, None) is None
