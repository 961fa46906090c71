"""Fetching a response from a survey tool's API, for kinds whose webhook names it by id only.

SurveyMonkey: `GET {base_url}/v3/surveys/{survey_id}/responses/{response_id}/details?simple=true`
with `Authorization: Bearer <token>`. Qualtrics: `GET {base_url}/API/v3/surveys/{survey_id}/
responses/{response_id}` with `X-API-TOKEN: <token>`. The answer is parsed by the kind's pure
`parse_api_response`.

Failures are `FetchFailed`: transient (retried with backoff) for connection errors, timeouts,
429 and 5xx; permanent for other 4xx (401/403: the token; 404: no such response) and for an
answer that is not the documented JSON. No message carries the token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from closeloop_ingest.domain.sources import qualtrics, surveymonkey
from closeloop_ingest.domain.sources.base import (
    FetchFailed,
    Ignored,
    InvalidPayload,
    Responses,
    SourceDefinition,
)

Parser = Callable[[Any, SourceDefinition, Mapping[str, str]], Responses | Ignored]


async def fetch_response(
    client: httpx.AsyncClient, source: SourceDefinition, ids: Mapping[str, str]
) -> Responses | Ignored:
    """The response `ids` names, fetched from the vendor's API and made canonical."""
    if source.api is None:
        raise FetchFailed(f"source {source.name} has no API access configured", transient=False)
    survey_id, response_id = ids.get("survey_id"), ids.get("response_id")
    if not survey_id or not response_id:
        raise FetchFailed("the delivery named no survey_id and response_id", transient=False)
    base = source.api.base_url.rstrip("/")
    token = source.api.token.get_secret_value()
    survey, response = quote(survey_id, safe=""), quote(response_id, safe="")
    params: dict[str, str] = {}
    parser: Parser
    if source.kind == "surveymonkey":
        vendor = "SurveyMonkey"
        url = f"{base}/v3/surveys/{survey}/responses/{response}/details"
        headers = {"Authorization": f"Bearer {token}"}
        params = {"simple": "true"}
        parser = surveymonkey.parse_api_response
    elif source.kind == "qualtrics":
        vendor = "Qualtrics"
        url = f"{base}/API/v3/surveys/{survey}/responses/{response}"
        headers = {"X-API-TOKEN": token}
        parser = qualtrics.parse_api_response
    else:
        raise FetchFailed(f"kind {source.kind} has no API to fetch from", transient=False)
    what = f"{vendor} response {response_id} of survey {survey_id}"
    headers["Accept"] = "application/json"
    try:
        answer = await client.get(url, headers=headers, params=params)
    except httpx.TransportError as exc:
        raise FetchFailed(f"{what}: {type(exc).__name__} reaching the API", transient=True) from exc
    except httpx.RequestError as exc:
        raise FetchFailed(f"{what}: {type(exc).__name__}", transient=False) from exc
    _check_status(answer.status_code, what)
    try:
        document = answer.json()
    except ValueError as exc:
        raise FetchFailed(f"{what}: the answer is not JSON", transient=False) from exc
    try:
        return parser(document, source, ids)
    except InvalidPayload as exc:
        raise FetchFailed(f"{what}: not the documented answer ({exc})", transient=False) from exc


def _check_status(status: int, what: str) -> None:
    if 200 <= status < 300:
        return
    if status == 429 or status >= 500:
        raise FetchFailed(f"{what}: the API answered {status}", transient=True)
    hint = {
        401: "the API token is not accepted",
        403: "the API token may not read responses",
        404: "no such response",
    }.get(status, "refused")
    raise FetchFailed(f"{what}: the API answered {status} ({hint})", transient=False)
