"""`make run`: start the SMTP sink and the four services, feed them a realistic stream of survey
responses, and keep printing where to look: service URLs, the NPS, open cases, the sink's mail.

Ctrl-C stops everything. The first response is a detractor, so an apology reaches the sink within
seconds of start. `--attach` feeds services that run already on the same ports instead (`docker
compose up`, whose services verify tokens with the same `.infra/auth` key pair; its mail goes to
Mailpit): `make demo-feed`.

Authentication: a key pair is made once under `<state dir>/auth/` (kept across runs, git-ignored);
the services verify tokens with its public key. The feed posts with a `responses:write` token of
the tenant `demo`, the status lines read with a `read` token, which is printed with a curl line.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import random
import secrets
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from closeloop_common.services import SERVICES
from closeloop_common.tokens import KeyPair, generate_key_pair, mint_token
from closeloop_devtools.demo_outer_loop import (
    KEY_ACCOUNTS,
    bad_webhook,
    close_top_theme,
    outer_loop_lines,
    silent_invitation,
    watch_silence,
    work_cases,
)
from closeloop_devtools.mailsink import MailSink, body_text, read_mailbox
from closeloop_devtools.stack import DEMO_MESSAGING, Stack

DEMO_TENANT = "demo"
# The segments whose NPS scoring watches (gauges, `nps.changed.v1`): the NPS overview dashboard.
HEADLINES = [
    {"tenant": DEMO_TENANT, "name": "overall"},
    {"tenant": DEMO_TENANT, "name": "poland", "filters": {"region": "PL"}},
    {"tenant": DEMO_TENANT, "name": "uk", "filters": {"region": "UK"}},
]
TOKEN_TTL_SECONDS = 12 * 3600


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    region: str
    locale: str


ACCOUNTS = (
    Account("hurtownia-nowak", "PL", "pl-PL"),
    Account("baltic-logistics", "PL", "pl-PL"),
    Account("mazowsze-med", "PL", "pl-PL"),
    Account("northwind-uk", "UK", "en-GB"),
    Account("acme-retail", "UK", "en-GB"),
    Account("rheinwerk", "DE", "en"),
)
PRODUCTS = ("billing", "mobile-app", "delivery", "support-portal")
CHANNELS = ("email", "in-app", "sms")
TOUCHPOINTS = ("onboarding", "support-ticket", "renewal", "delivery")
PEOPLE_PL = (
    "Anna Kowalska",
    "Piotr Zieliński",
    "Katarzyna Wójcik",
    "Marek Lewandowski",
    "Joanna Dąbrowska",
)
PEOPLE_EN = ("Oliver Smith", "Amelia Jones", "Harry Taylor", "Isla Brown", "Jack Wilson")

COMMENTS = {
    ("detractor", "pl"): (
        "Faktura znowu była błędna, a na korektę czekałem trzy tygodnie.",
        "Dostawa spóźniła się o tydzień i nikt nas nie poinformował.",
        "Aplikacja mobilna ciągle się wylogowuje, nie da się pracować.",
        "Infolinia nie odbiera, zgłoszenie wisi bez odpowiedzi.",
    ),
    ("detractor", "en"): (
        "The invoice was wrong again and the correction took three weeks.",
        "Delivery was a week late and nobody told us.",
        "Support never called back about my ticket.",
        "The app keeps logging me out; it is unusable on the road.",
    ),
    ("passive", "pl"): (
        "Ogólnie w porządku, ale ceny rosną szybciej niż jakość.",
        "Produkt dobry, wdrożenie mogłoby być krótsze.",
    ),
    ("passive", "en"): (
        "Fine overall, but onboarding took longer than promised.",
        "Good product; the reporting could be clearer.",
    ),
    ("promoter", "pl"): (
        "Świetny kontakt z opiekunem, wszystko działa jak należy.",
        "Polecam, szybka dostawa i rzetelna obsługa.",
    ),
    ("promoter", "en"): (
        "Great account manager, everything just works.",
        "Fast delivery and a support team that actually listens.",
    ),
}


def category_of(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def make_response(
    rng: random.Random, run_id: str, n: int, now: datetime, *, score: int | None = None
) -> dict[str, Any]:
    account = rng.choice(ACCOUNTS)
    polish = account.locale.startswith("pl")
    name = rng.choice(PEOPLE_PL if polish else PEOPLE_EN)
    if score is None:
        score = rng.choices(range(11), weights=(2, 1, 2, 3, 3, 4, 6, 9, 12, 14, 12))[0]
    comments = COMMENTS[(category_of(score), "pl" if polish else "en")]
    customer_id = f"{account.id}-{name.split()[0].lower()}"
    return {
        "response_id": f"demo-{run_id}-{n:05d}",
        "survey_id": "relationship-nps-2026",
        "customer": {
            "id": customer_id,
            "email": f"{customer_id}@customers.example.com",
            "name": name,
            "locale": account.locale,
        },
        "account_id": account.id,
        "score": score,
        "comment": rng.choice(comments) if rng.random() < 0.85 else None,
        "answered_at": (now - timedelta(seconds=rng.randint(0, 3600))).isoformat(),
        "segments": {
            "product": rng.choice(PRODUCTS),
            "region": account.region,
            "channel": rng.choice(CHANNELS),
            "touchpoint": rng.choice(TOUCHPOINTS),
        },
    }


def invitation_of(response: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """The invitation that preceded `response` (hours before: no suspicion of a link scanner)."""
    answered_at = datetime.fromisoformat(response["answered_at"])
    return {
        "invitation_id": f"inv-{response['response_id']}",
        "survey_id": response["survey_id"],
        "customer": response["customer"],
        "account_id": response["account_id"],
        "channel": response["segments"]["channel"],
        "invited_at": (answered_at - timedelta(hours=rng.uniform(1, 48))).isoformat(),
        "segments": response["segments"],
    }


def typeform_body(response: dict[str, Any]) -> bytes:
    """`response` as Typeform would post it (`form_response`; hidden fields for the respondent)."""
    nps = {"id": "npsQ1", "type": "nps", "ref": "nps_score"}
    text = {"id": "txtQ2", "type": "long_text", "ref": "what_to_improve"}
    at = datetime.fromisoformat(response["answered_at"]).astimezone(UTC)
    answers: list[dict[str, Any]] = [{"type": "number", "number": response["score"], "field": nps}]
    if response["comment"]:
        answers.append({"type": "text", "text": response["comment"], "field": text})
    customer = response["customer"]
    payload = {
        "event_id": f"ev-{response['response_id']}",
        "event_type": "form_response",
        "form_response": {
            "form_id": response["survey_id"],
            "token": response["response_id"],
            "landed_at": (at - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "submitted_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hidden": {
                "customer_id": customer["id"],
                "email": customer["email"],
                "name": customer["name"],
                "locale": customer["locale"],
                "account_id": response["account_id"],
                **response["segments"],
            },
            "definition": {
                "id": response["survey_id"],
                "title": "NPS",
                "fields": [{**nps, "title": "How likely?"}, {**text, "title": "Why?"}],
            },
            "answers": answers,
        },
    }
    return json.dumps(payload, ensure_ascii=False).encode()


def typeform_signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(digest).decode()


def create_typeform_source(stack: Stack, headers: dict[str, str], secret: str) -> str:
    """The demo tenant's Typeform source; its webhook path."""
    reply = httpx.put(
        f"{stack.url('ingest')}/v1/sources/typeform-nps",
        json={"kind": "typeform", "secrets": [secret]},
        headers=headers,
        timeout=10,
    )
    reply.raise_for_status()
    url: str = reply.json()["webhook_url"]
    return url.removeprefix(stack.url("ingest"))


def demo_keys(state_dir: Path) -> KeyPair:
    """The demo's key pair, made on the first run and kept (tokens printed earlier stay valid)."""
    directory = state_dir / "auth"
    pair = KeyPair(directory / "private.pem", directory / "public.pem")
    if pair.private.exists() and pair.public.exists():
        return pair
    return generate_key_pair(directory)


def bearer(keys: KeyPair, *scopes: str) -> dict[str, str]:
    token = mint_token(
        keys.private.read_bytes(),
        tenant=DEMO_TENANT,
        scopes=list(scopes),
        ttl_seconds=TOKEN_TTL_SECONDS,
        subject="closeloop-demo",
    )
    return {"Authorization": f"Bearer {token}"}


def urls_of(stack: Stack) -> dict[str, str]:
    return {spec.name: stack.url(spec.name) for spec in SERVICES}


def feed(
    stack: Stack,
    *,
    count: int,
    interval: float,
    stop: threading.Event,
    seed: int,
    headers: dict[str, str],
    webhook: tuple[str, str] | None = None,
) -> None:
    """Post `count` responses, each after its invitation: every third one as a signed Typeform
    webhook (`webhook`: its path and secret), the others to the canonical API."""
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:8]
    with httpx.Client(base_url=stack.url("ingest"), headers=headers, timeout=10) as client:
        for n in range(count):
            if stop.is_set():
                return
            response = make_response(rng, run_id, n, datetime.now(UTC), score=2 if n == 0 else None)
            replies = [client.post("/v1/invitations", json=invitation_of(response, rng))]
            if n % 25 == 5:  # a key contact of a key account who never answers
                replies.append(client.post("/v1/invitations", json=silent_invitation(n, run_id)))
            if webhook is not None and n % 40 == 17:  # a tool still signing with an old secret
                refused = client.post(**bad_webhook(webhook[0], typeform_body(response)))
                if refused.status_code != 401:
                    print(f"  feed: a badly signed webhook got {refused.status_code}", flush=True)
            if webhook is not None and n % 3 == 1:
                path, secret = webhook
                body = typeform_body(response)
                signature = typeform_signature(secret, body)
                replies.append(
                    client.post(
                        path,
                        content=body,
                        headers={
                            "content-type": "application/json",
                            "Typeform-Signature": signature,
                        },
                    )
                )
            else:
                replies.append(client.post("/v1/responses", json=response))
            for reply in replies:
                if reply.status_code >= 300:
                    print(f"  feed: {reply.status_code} {reply.text}", flush=True)
            stop.wait(interval)


def print_status(stack: Stack, maildir: Path | None, headers: dict[str, str]) -> None:
    with httpx.Client(headers=headers, timeout=5) as client:
        scoring = stack.url("scoring")
        overall = client.get(f"{scoring}/v1/nps", params={"window": "30d"}).json()
        regions = client.get(
            f"{scoring}/v1/nps/breakdown", params={"by": "region", "window": "30d"}
        ).json()["segments"]
        themes = client.get(f"{scoring}/v1/drivers", params={"window": "30d"}).json()["drivers"]
        cases = client.get(
            f"{stack.url('orchestrator')}/v1/cases", params={"status": "open", "limit": 500}
        ).json()["cases"]
    mails = [] if maildir is None else read_mailbox(maildir)
    nps = overall["nps"]
    print(
        f"\n[{datetime.now().strftime('%H:%M:%S')}] responses {overall['responses']}  "
        f"NPS {'n/a' if nps is None else f'{nps:+.1f}'}"
        + (
            f" [{overall['ci_low']:+.1f}, {overall['ci_high']:+.1f}]"
            if overall["ci_low"] is not None
            else ""
        )
        + f"  (promoters {overall['promoters']}, passives {overall['passives']}, detractors {overall['detractors']})",
        flush=True,
    )
    print(
        "  by region: "
        + ", ".join(
            f"{s['segment']} {s['nps']:+.0f} (n={s['responses']})"
            for s in regions
            if s["nps"] is not None
        )
    )
    if themes:
        print(
            "  drivers (NPS points if their detractors were passives): "
            + ", ".join(f"{d['theme']} +{d['nps_impact']:.1f}" for d in themes[:3])
        )
    by_playbook: dict[str, int] = {}
    for case in cases:
        by_playbook[case["playbook"]] = by_playbook.get(case["playbook"], 0) + 1
    print(
        f"  open cases: {len(cases)} {by_playbook}"
        + ("" if maildir is None else f"  messages in the sink: {len(mails)}")
    )
    try:
        print("\n".join(outer_loop_lines(urls_of(stack), headers)))
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        print(f"  outer loop unavailable: {exc!r}")
    apologies = [m for m in mails if m["X-Closeloop-Template"] == "apology"]
    if apologies:
        latest = apologies[-1]
        print(f"  latest apology: to {latest['To']} | {latest['Subject']}")
        print("    " + "\n    ".join(body_text(latest).splitlines()[:8]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="closeloop-demo", description=__doc__)
    parser.add_argument("--count", type=int, default=300, help="responses to post")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between responses")
    parser.add_argument("--status-every", type=float, default=10.0)
    parser.add_argument("--state-dir", type=Path, default=Path(".infra"))
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--duration", type=float, default=0, help="stop after N seconds (0: Ctrl-C)"
    )
    parser.add_argument(
        "--attach",
        action="store_true",
        help="feed services already running on the usual ports (docker compose up) instead of "
        "starting them; tokens are signed with <state dir>/auth/private.pem, whose public key "
        "the services verify with",
    )
    parser.add_argument(
        "--close-theme-after",
        type=float,
        default=45.0,
        help="seconds before the top comment theme becomes a structural issue taken to done",
    )
    args = parser.parse_args(argv)

    maildir = args.state_dir / "mail"
    keys = demo_keys(args.state_dir)
    feed_headers = bearer(keys, "responses:write")
    admin_headers = bearer(keys, "admin")
    read_headers = bearer(keys, "read")
    loop_headers = bearer(keys, "read", "cases:write")
    # Attached: the services (and the mail catcher) run already, e.g. `docker compose up`.
    sink = None if args.attach else MailSink(maildir, port=1025)
    if sink is not None:
        sink.start()
    stack = Stack(
        env={
            "LOG_FORMAT": "json",
            "AUTH_PUBLIC_KEY_FILE": str(keys.public.resolve()),
            "NOTIFIER_DEFAULT_MESSAGING": DEMO_MESSAGING,
            "SCORING_HEADLINES": json.dumps(HEADLINES),
        },
        log_dir=args.state_dir / "logs",
    )
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        print(f"\n{signal.Signals(signum).name}: stopping ...", flush=True)
        stop.set()

    # Explicit handlers: Ctrl-C in a terminal, SIGTERM from a supervisor, and SIGINT even when a
    # non-interactive shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    try:
        if args.attach:
            stack.wait_ready([spec.name for spec in SERVICES], timeout=60)
        else:
            print("migrating schemas ...", flush=True)
            stack.migrate()
            print("starting services ...", flush=True)
            stack.start()
        print("\nCloseloop is running:")
        for spec in SERVICES:
            url = stack.url(spec.name)
            print(f"  {spec.name:<13} {url}   (docs: {url}/docs, metrics: /metrics)")
        if sink is not None:
            print(f"  SMTP sink     127.0.0.1:1025 -> {maildir}/new")
        print(f"  service logs  {args.state_dir / 'logs'}")
        print(
            f"\nA read token of the tenant `{DEMO_TENANT}` (valid 12 h) and a curl line that uses it:"
        )
        print(f"  export CLOSELOOP_TOKEN={read_headers['Authorization'].removeprefix('Bearer ')}")
        print(
            '  curl -s -H "Authorization: Bearer $CLOSELOOP_TOKEN" '
            f"{stack.url('orchestrator')}/v1/cases"
        )
        print(
            f"More tokens: {Path(sys.executable).parent / 'closeloop-token'} mint "
            f"--key {keys.private} --tenant {DEMO_TENANT} --scope read --ttl 3600"
        )
        secret = secrets.token_urlsafe(24)
        webhook = create_typeform_source(stack, admin_headers, secret)
        watch_silence(stack.url("orchestrator"), admin_headers)
        print(
            f"Key accounts {', '.join(KEY_ACCOUNTS)}: a key contact silent for a minute opens a "
            "lack-of-response case (14 days outside the demo)."
        )
        print(
            f"A Typeform source of `{DEMO_TENANT}` takes signed webhooks at "
            f"{stack.url('ingest')}{webhook} (every third demo response arrives that way)."
        )
        print("Feeding demo responses; Ctrl-C stops everything.", flush=True)
        feeder = threading.Thread(
            target=feed,
            args=(stack,),
            daemon=True,
            kwargs={
                "count": args.count,
                "interval": args.interval,
                "stop": stop,
                "seed": args.seed,
                "headers": feed_headers,
                "webhook": (webhook, secret),
            },
        )
        feeder.start()
        theme_closed = False
        agents = random.Random(args.seed)
        while not stop.wait(args.status_every):
            try:
                work_cases(stack.url("orchestrator"), loop_headers, agents, most=6)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                print(f"  the team could not work cases: {exc!r}")
            if not theme_closed and time.monotonic() - started > args.close_theme_after:
                try:
                    said = close_top_theme(urls_of(stack), loop_headers)
                except (httpx.HTTPError, KeyError, ValueError) as exc:
                    said = f"structural issue not made: {exc!r}"
                if said is not None:
                    print(f"\n[outer loop] {said}", flush=True)
                    theme_closed = True
            try:
                print_status(stack, None if args.attach else maildir, read_headers)
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                print(f"  status unavailable: {exc!r}")
            if args.duration and time.monotonic() - started > args.duration:
                break
    finally:
        stop.set()
        if not args.attach:
            stack.stop()
        if sink is not None:
            sink.stop()
    return 0
