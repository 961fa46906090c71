"""Signed Typeform `form_response` webhooks for load tests, written to a file wrk reads.

Each body is a documented Typeform payload (form definition, an `nps` answer, a `long_text`
comment in Polish, hidden fields naming the respondent) with its own `token`, so every one is a
new response to ingest, never a duplicate. Scores cycle through promoters, passives and
detractors. A line is `<Typeform-Signature value><TAB><body>`: the signature is
`sha256=<base64 HMAC-SHA256(secret, body)>` over the exact bytes sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

SIGNATURE_HEADER = "Typeform-Signature"
FORM_ID = "NpsB3nch"
# Ten answers: 4 promoters, 3 passives, 3 detractors.
SCORES = (10, 9, 8, 3, 10, 7, 0, 9, 8, 6)
COMMENTS = {
    "promoter": (
        "Świetna obsługa, polecam znajomym!",
        "Szybka dostawa i miły kontakt z konsultantem.",
    ),
    "passive": (
        "Ogólnie w porządku, ale aplikacja czasem się zawiesza.",
        "Ceny mogłyby być niższe.",
    ),
    "detractor": (
        "Zamówienie przyszło po dwóch tygodniach, nikt nie odpowiadał na maile.",
        "Obsługa była powolna, a faktura miała błędy. Żółć mnie zalała.",
    ),
}
NAMES = ("Zofia Wójcik", "Piotr Zieliński", "Agnieszka Łęcka", "Michał Żak", "Ewa Gęślarz")


def category(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def sign(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def typeform_payload(*, run: str, n: int, submitted_at: datetime) -> dict[str, Any]:
    """The `n`-th webhook of `run`; its token (the response id) is unique to both."""
    score = SCORES[n % len(SCORES)]
    comments = COMMENTS[category(score)]
    at = submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "event_id": f"{run}E{n:09d}",
        "event_type": "form_response",
        "form_response": {
            "form_id": FORM_ID,
            "token": f"{run}t{n:09d}",
            "landed_at": at,
            "submitted_at": at,
            "hidden": {
                "customer_id": f"cust-{n}",
                "email": f"klient{n}@bench.example.com",
                "name": NAMES[n % len(NAMES)],
                "locale": "pl-PL",
                "account_id": f"acc-{n % 500}",
                "product": ("app", "sklep", "dostawa")[n % 3],
                "region": ("pl-maz", "pl-mal", "pl-pom")[n % 3],
            },
            "definition": {
                "id": FORM_ID,
                "title": "Badanie NPS",
                "fields": [
                    {
                        "id": "Ab12Cd34Ef56",
                        "title": "Jak bardzo prawdopodobne jest, że polecisz nas znajomemu?",
                        "type": "nps",
                        "ref": "nps_score",
                    },
                    {
                        "id": "DlXFaesGBpoF",
                        "title": "Co moglibyśmy poprawić?",
                        "type": "long_text",
                        "ref": "what_to_improve",
                    },
                ],
            },
            "answers": [
                {
                    "type": "number",
                    "number": score,
                    "field": {"id": "Ab12Cd34Ef56", "type": "nps", "ref": "nps_score"},
                },
                {
                    "type": "text",
                    "text": comments[n % len(comments)],
                    "field": {"id": "DlXFaesGBpoF", "type": "long_text", "ref": "what_to_improve"},
                },
            ],
        },
    }


def write_bodies(
    path: Path, *, secret: str, run: str, count: int, first: int, submitted_at: datetime
) -> int:
    """Write `count` signed bodies (numbers `first`...) to `path`; returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("wb") as out:
        for n in range(first, first + count):
            body = orjson.dumps(typeform_payload(run=run, n=n, submitted_at=submitted_at))
            written += out.write(sign(secret, body).encode() + b"\t" + body + b"\n")
    return written
