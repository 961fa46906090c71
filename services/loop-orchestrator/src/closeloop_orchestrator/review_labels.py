"""The words of the review pack's HTML page, in Polish and English, and which of the two a
request gets: `lang=pl|en` when given, else the first of them its `Accept-Language` prefers,
else English."""

from __future__ import annotations

from typing import Final, Literal

Language = Literal["pl", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("pl", "en")
DEFAULT_LANGUAGE: Final[Language] = "en"

LABELS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "title": "Quarterly account review",
        "account": "Account",
        "quarter": "Quarter",
        "period": "Period",
        "time_zone": "time zone",
        "generated_at": "Prepared",
        "key_account": "Key account",
        "yes": "yes",
        "no": "no",
        "revenue_weight": "Revenue weight",
        "contents": "Contents",
        "nps": "NPS",
        "this_quarter": "This quarter",
        "previous_quarter": "Previous quarter",
        "answers": "Answers",
        "promoters": "Promoters",
        "passives": "Passives",
        "detractors": "Detractors",
        "interval": "Interval",
        "change": "Change",
        "p_value": "p-value",
        "significant": "significant",
        "not_significant": "not significant",
        "insufficient": "too few answers for a firm figure",
        "trend": "Trend, last four quarters",
        "month": "Month",
        "response_rate": "Response rate",
        "invitations": "Invitations",
        "rate": "Rate",
        "drivers": "Top drivers",
        "driver": "Driver",
        "root_cause": "root cause found in cases",
        "comment": "customers' comments",
        "share_of_detractors": "Share of detractors",
        "nps_impact": "NPS impact",
        "health": "Account health",
        "state": "State",
        "reasons": "Reasons",
        "cases": "Follow-up cases",
        "opened": "Opened in the quarter",
        "total": "Total",
        "resolved": "Resolved in the quarter",
        "closed": "Closed in the quarter",
        "open_now": "Open now",
        "first_contact": "First contact",
        "within_sla": "Within SLA",
        "breaches": "SLA breaches",
        "p50_hours": "Time to first contact, median (hours)",
        "p90_hours": "Time to first contact, 90th percentile (hours)",
        "actions": "Agreed actions",
        "action": "Action",
        "owner": "Owner",
        "due_on": "Due",
        "status": "Status",
        "note": "Note",
        "overdue": "overdue",
        "issues": "Structural issues",
        "issue": "Issue",
        "decided_at": "Decided",
        "account_cases": "Account's cases",
        "none": "None.",
        "no_data": "no data",
        "unavailable": "Not available: scoring did not answer.",
    },
    "pl": {
        "title": "Kwartalny przegląd klienta",
        "account": "Klient",
        "quarter": "Kwartał",
        "period": "Okres",
        "time_zone": "strefa czasowa",
        "generated_at": "Przygotowano",
        "key_account": "Kluczowy klient",
        "yes": "tak",
        "no": "nie",
        "revenue_weight": "Waga przychodu",
        "contents": "Spis treści",
        "nps": "NPS",
        "this_quarter": "Ten kwartał",
        "previous_quarter": "Poprzedni kwartał",
        "answers": "Odpowiedzi",
        "promoters": "Promotorzy",
        "passives": "Neutralni",
        "detractors": "Krytycy",
        "interval": "Przedział",
        "change": "Zmiana",
        "p_value": "wartość p",
        "significant": "istotna",
        "not_significant": "nieistotna",
        "insufficient": "za mało odpowiedzi na pewny wynik",
        "trend": "Trend z ostatnich czterech kwartałów",
        "month": "Miesiąc",
        "response_rate": "Wskaźnik odpowiedzi",
        "invitations": "Zaproszenia",
        "rate": "Wskaźnik",
        "drivers": "Główne czynniki",
        "driver": "Czynnik",
        "root_cause": "przyczyna ustalona w sprawach",
        "comment": "komentarze klientów",
        "share_of_detractors": "Udział wśród krytyków",
        "nps_impact": "Wpływ na NPS",
        "health": "Kondycja klienta",
        "state": "Stan",
        "reasons": "Powody",
        "cases": "Sprawy",
        "opened": "Otwarte w kwartale",
        "total": "Razem",
        "resolved": "Rozwiązane w kwartale",
        "closed": "Zamknięte w kwartale",
        "open_now": "Otwarte teraz",
        "first_contact": "Pierwszy kontakt",
        "within_sla": "W terminie (SLA)",
        "breaches": "Przekroczenia SLA",
        "p50_hours": "Czas do pierwszego kontaktu, mediana (godziny)",
        "p90_hours": "Czas do pierwszego kontaktu, 90. percentyl (godziny)",
        "actions": "Uzgodnione działania",
        "action": "Działanie",
        "owner": "Odpowiedzialny",
        "due_on": "Termin",
        "status": "Status",
        "note": "Uwagi",
        "overdue": "po terminie",
        "issues": "Problemy systemowe",
        "issue": "Problem",
        "decided_at": "Decyzja",
        "account_cases": "Sprawy klienta",
        "none": "Brak.",
        "no_data": "brak danych",
        "unavailable": "Niedostępne: scoring nie odpowiedział.",
    },
}

VALUES: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "promoter": "promoters",
        "passive": "passives",
        "detractor": "detractors",
        "no_response": "no response",
        "agreed": "agreed",
        "in_progress": "in progress",
        "done": "done",
        "dropped": "dropped",
        "proposed": "proposed",
        "prioritised": "prioritised",
        "rejected": "rejected",
        "safe": "safe",
        "at_risk": "at risk",
        "unknown": "unknown",
    },
    "pl": {
        "promoter": "promotorzy",
        "passive": "neutralni",
        "detractor": "krytycy",
        "no_response": "brak odpowiedzi",
        "agreed": "uzgodnione",
        "in_progress": "w toku",
        "done": "zrobione",
        "dropped": "porzucone",
        "proposed": "zaproponowany",
        "prioritised": "priorytetowy",
        "rejected": "odrzucony",
        "safe": "bezpieczny",
        "at_risk": "zagrożony",
        "unknown": "nieznany",
    },
}
"""Statuses, case types and health states as the page names them."""


def language_of(lang: str | None, accept_language: str | None) -> Language:
    """`lang` when it is pl or en; else the language `Accept-Language` prefers most among pl and
    en (by q-value, then order; `pl-PL` counts as pl); else English."""
    for known in LANGUAGES:
        if lang == known:
            return known
    best: tuple[float, int, Language] | None = None
    for position, part in enumerate((accept_language or "").split(",")[:50]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        language = next((known for known in LANGUAGES if known == primary), None)
        if language is None:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if not 0 < weight <= 1:  # q=0 is "not this one"; NaN and nonsense count for nothing
            continue
        candidate = (-weight, position, language)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    return DEFAULT_LANGUAGE if best is None else best[2]
