"""The unsubscribe link's endpoint: `GET` shows a confirmation page, `POST` records the opt-out.

These routes take no bearer token: the token in the path is the credential (it names one tenant
and one address, and only the notifier's secret makes one; `domain.unsubscribe`). Every other
route of the app stays protected, because `closeloop_common.web` authenticates per route, by the
tenant dependency a route takes, and these routes take none.

- `GET /v1/unsubscribe/{token}`: a small page (Polish and English) with a button that POSTs to
  the same URL. A GET never unsubscribes: mail scanners and link previews open links on their own.
- `POST /v1/unsubscribe/{token}`: the RFC 8058 one-click request (`List-Unsubscribe=One-Click`,
  form-encoded, sent by the mail client) and the page's button alike. The body is not needed
  and not checked: the token decides. Recorded with `policy.add_opt_out`; a repeat answers the
  same 200 page (idempotent).
- A token that does not read (tampered, truncated, another secret) is a 404 HTML page, not
  problem+json: the people who reach it are customers in a browser, for whom a JSON document
  is no answer; the status code still tells a mail client it failed.

Pages are static text plus the masked address (`a…@example.pl`), HTML-escaped; they are not
cached, send no referrer (the URL holds the token), and may not be framed.
"""

from __future__ import annotations

import html

from fastapi import APIRouter, status
from fastapi.responses import HTMLResponse

from closeloop_common.db import transaction
from closeloop_common.emails import InvalidEmailAddress
from closeloop_common.runtime import ServiceRuntime
from closeloop_notifier.domain.unsubscribe import InvalidToken, read_token
from closeloop_notifier.service_layer.policy import add_opt_out

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}button{font-size:1rem;padding:.6rem 1.2rem;cursor:pointer}"
    "hr{border:0;border-top:1px solid #ddd;margin:1.5rem 0}"
)


def masked(email_key: str) -> str:
    """`anna.nowak@klient.example.pl` -> `a…@klient.example.pl`: enough to recognise, not to
    harvest."""
    local, at, domain = email_key.rpartition("@")
    if not at:
        return "…"
    return f"{local[:1]}…@{domain}"


def _page(title: str, body: str, *, status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    document = (
        '<!doctype html><html lang="pl"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status_code, headers=_HEADERS)


def confirm_page(email_key: str) -> HTMLResponse:
    address = html.escape(masked(email_key))
    return _page(
        "Wypisanie z wiadomości / Unsubscribe",
        f"<h1>Wypisanie z wiadomości</h1>"
        f"<p>Czy na pewno nie chcą Państwo otrzymywać od nas wiadomości na adres "
        f"<strong>{address}</strong>?</p>"
        '<hr lang="en"><h2 lang="en">Unsubscribe</h2>'
        f'<p lang="en">Stop our messages to <strong>{address}</strong>?</p>'
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Wypisz mnie / Unsubscribe me</button></form>',
    )


def done_page(email_key: str) -> HTMLResponse:
    address = html.escape(masked(email_key))
    return _page(
        "Wypisano / Unsubscribed",
        f"<h1>Gotowe</h1><p>Nie będziemy już wysyłać wiadomości na adres "
        f"<strong>{address}</strong>.</p>"
        '<hr lang="en"><h2 lang="en">Done</h2>'
        f'<p lang="en">We will send no more messages to <strong>{address}</strong>.</p>',
    )


def not_found_page() -> HTMLResponse:
    return _page(
        "Nieprawidłowy link / Invalid link",
        "<h1>Nieprawidłowy link</h1><p>Ten link do wypisania się jest niepełny lub "
        "nieprawidłowy. Prosimy skopiować cały adres z wiadomości albo odpisać na nią.</p>"
        '<hr lang="en"><h2 lang="en">Invalid link</h2><p lang="en">This unsubscribe link is '
        "incomplete or not valid. Please copy the whole link from the message, or reply to "
        "it.</p>",
        status_code=status.HTTP_404_NOT_FOUND,
    )


def build_unsubscribe_router(runtime: ServiceRuntime, secret: str) -> APIRouter:
    """The public unsubscribe routes (no bearer token; see the module docstring)."""
    if not secret:
        raise ValueError("the unsubscribe secret must not be empty")
    router = APIRouter(prefix="/v1/unsubscribe", tags=["unsubscribe"])

    @router.get(
        "/{token}",
        response_class=HTMLResponse,
        summary="The unsubscribe page: asks to confirm (a GET changes nothing)",
        responses={
            404: {
                "description": "The token is not valid (an HTML page)",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
    )
    async def show(token: str) -> HTMLResponse:
        try:
            _tenant, email_key = read_token(secret, token)
        except InvalidToken:
            return not_found_page()
        return confirm_page(email_key)

    @router.post(
        "/{token}",
        response_class=HTMLResponse,
        summary="Unsubscribe (RFC 8058 one-click, or the page's button); idempotent",
        responses={
            404: {
                "description": "The token is not valid (an HTML page)",
                "content": {"text/html": {"schema": {"type": "string"}}},
            }
        },
    )
    async def unsubscribe(token: str) -> HTMLResponse:
        try:
            tenant, email_key = read_token(secret, token)
        except InvalidToken:
            return not_found_page()
        try:
            async with transaction(runtime.sessions) as session:
                await add_opt_out(
                    session=session, tenant_id=tenant, email=email_key, clock=runtime.clock
                )
        except InvalidEmailAddress:
            return not_found_page()  # a token made for a key that is no address
        return done_page(email_key)

    return router
