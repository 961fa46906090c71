"""Message templates and their choice. Pure: given a case's facts, the subject and body to send.

Locales: Polish and English (fallback). The locale comes from the customer's `locale`
(`pl`, `pl-PL` -> Polish). Text is plain (no HTML), so nothing a customer wrote can inject markup.
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template

from closeloop_common.events import Playbook

SUPPORTED_LOCALES = ("en", "pl")
DEFAULT_LOCALE = "en"

TEMPLATE_BY_PLAYBOOK: dict[Playbook, str] = {
    Playbook.APOLOGY_CALLBACK: "apology",
    Playbook.IMPROVEMENT_ASK: "improvement_ask",
    Playbook.THANKS_REFERRAL: "thanks",
}


@dataclass(frozen=True, slots=True)
class MessageContext:
    customer_name: str | None
    comment: str | None
    owner_name: str
    owner_email: str
    company_name: str


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    template: str
    locale: str
    subject: str
    body: str


@dataclass(frozen=True, slots=True)
class _Text:
    subject: str
    greeting_named: str
    greeting_anonymous: str
    body: str
    comment_intro: str
    signature: str


_TEXTS: dict[tuple[str, str], _Text] = {
    ("apology", "en"): _Text(
        subject="We are sorry, and we want to put it right",
        greeting_named="Dear $name,",
        greeting_anonymous="Hello,",
        body=(
            "thank you for your honest answer to our survey. We are sorry that $company "
            "did not live up to your expectations.\n\n"
            "I have taken personal responsibility for your feedback and will call you within the "
            "next working days to understand what went wrong and how we can fix it. If you prefer, "
            "simply reply to this email."
        ),
        comment_intro="You wrote:",
        signature="Kind regards,\n$owner\n$company\n$owner_email",
    ),
    ("apology", "pl"): _Text(
        subject="Przepraszamy i chcemy to naprawić",
        greeting_named="Dzień dobry, $name,",
        greeting_anonymous="Dzień dobry,",
        body=(
            "dziękujemy za szczerą odpowiedź w naszej ankiecie. Przykro nam, że nie spełniliśmy "
            "Państwa oczekiwań.\n\n"
            "Osobiście zajmę się Państwa opinią i zadzwonię w najbliższych dniach roboczych, "
            "aby zrozumieć, co poszło nie tak i jak możemy to naprawić. Można też po prostu "
            "odpowiedzieć na tę wiadomość."
        ),
        comment_intro="Napisali Państwo:",
        signature="Z wyrazami szacunku\n$owner\n$company\n$owner_email",
    ),
    ("improvement_ask", "en"): _Text(
        subject="What would make us a 10 for you?",
        greeting_named="Dear $name,",
        greeting_anonymous="Hello,",
        body=(
            "thank you for answering our survey. We would love to earn a higher score from you.\n\n"
            "Could you tell us the one or two things $company should improve first? "
            "Just reply to this email; I read every answer myself."
        ),
        comment_intro="You wrote:",
        signature="Thank you,\n$owner\n$company\n$owner_email",
    ),
    ("improvement_ask", "pl"): _Text(
        subject="Co sprawiłoby, że ocenią nas Państwo na 10?",
        greeting_named="Dzień dobry, $name,",
        greeting_anonymous="Dzień dobry,",
        body=(
            "dziękujemy za udział w ankiecie. Bardzo chcielibyśmy zasłużyć na wyższą ocenę.\n\n"
            "Co powinniśmy poprawić w pierwszej kolejności? Wystarczą jedna lub dwie rzeczy: "
            "proszę po prostu odpowiedzieć na tę wiadomość; każdą odpowiedź czytam osobiście."
        ),
        comment_intro="Napisali Państwo:",
        signature="Dziękuję\n$owner\n$company\n$owner_email",
    ),
    ("thanks", "en"): _Text(
        subject="Thank you for recommending us",
        greeting_named="Dear $name,",
        greeting_anonymous="Hello,",
        body=(
            "thank you for your great score. It means a lot to the whole team at $company.\n\n"
            "If you have a minute, a short public review or an introduction to a colleague who "
            "could benefit from working with us would help us more than anything else."
        ),
        comment_intro="You wrote:",
        signature="With thanks,\n$owner\n$company\n$owner_email",
    ),
    ("thanks", "pl"): _Text(
        subject="Dziękujemy za polecenie",
        greeting_named="Dzień dobry, $name,",
        greeting_anonymous="Dzień dobry,",
        body=(
            "dziękujemy za wysoką ocenę. To wiele znaczy dla całego zespołu $company.\n\n"
            "Jeśli znajdą Państwo chwilę, krótka publiczna opinia lub polecenie nas komuś, "
            "komu nasza współpraca mogłaby pomóc, będzie dla nas najcenniejszym wsparciem."
        ),
        comment_intro="Napisali Państwo:",
        signature="Z podziękowaniami\n$owner\n$company\n$owner_email",
    ),
}


def choose_locale(customer_locale: str | None) -> str:
    """The supported language of a BCP 47 tag (`pl-PL` -> `pl`), English when unsupported."""
    if customer_locale:
        language = customer_locale.split("-")[0].lower()
        if language in SUPPORTED_LOCALES:
            return language
    return DEFAULT_LOCALE


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.strip().splitlines())


def render(playbook: Playbook, customer_locale: str | None, ctx: MessageContext) -> RenderedMessage:
    template = TEMPLATE_BY_PLAYBOOK[playbook]
    locale = choose_locale(customer_locale)
    text = _TEXTS[(template, locale)]
    values = {
        "name": (ctx.customer_name or "").strip(),
        "company": ctx.company_name,
        "owner": ctx.owner_name,
        "owner_email": ctx.owner_email,
    }
    # safe_substitute: a `$` typed by a customer or in a name is left as it is.
    greeting = Template(text.greeting_named if values["name"] else text.greeting_anonymous)
    parts = [greeting.safe_substitute(values), "", Template(text.body).safe_substitute(values)]
    if ctx.comment and ctx.comment.strip():
        parts += ["", text.comment_intro, _quote(ctx.comment)]
    parts += ["", Template(text.signature).safe_substitute(values)]
    return RenderedMessage(
        template=template,
        locale=locale,
        subject=Template(text.subject).safe_substitute(values),
        body="\n".join(parts) + "\n",
    )
