"""Comments for `make bench-scoring`'s responses: typical themes, in Polish and English.

A comment is about one theme (sometimes two): mostly the theme of the touchpoint the survey
followed (a delivery survey talks about delivery), otherwise any. Its tone follows the answer's
NPS category.
"""

from __future__ import annotations

import random

THEMES = ("support", "price", "delivery", "app", "invoice", "account-manager")
THEME_OF_TOUCHPOINT = {
    "support-ticket": "support",
    "delivery": "delivery",
    "invoice": "invoice",
    "onboarding": "app",
    "renewal": "price",
    "purchase": "account-manager",
}
# locale -> category -> theme -> sentences
SENTENCES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "pl-PL": {
        "detractor": {
            "support": (
                "Obsługa klienta nie odpowiada od tygodnia.",
                "Czekałem na połączenie z obsługą ponad godzinę.",
            ),
            "price": (
                "Cena wzrosła bez uprzedzenia, rozważamy zmianę dostawcy.",
                "Za drogo w porównaniu z konkurencją.",
            ),
            "delivery": (
                "Dostawa znowu spóźniona o trzy dni.",
                "Paczka przyszła uszkodzona, a kurier nie chciał spisać protokołu.",
            ),
            "app": (
                "Aplikacja ciągle się zawiesza przy logowaniu.",
                "Po aktualizacji aplikacja nie pokazuje zamówień.",
            ),
            "invoice": ("Faktura znowu była błędna.", "Trzeci raz proszę o korektę faktury."),
            "account-manager": (
                "Opiekun klienta zmienia się co miesiąc i nikt nie zna naszej historii.",
            ),
        },
        "passive": {
            "support": ("Obsługa w porządku, ale czas odpowiedzi mógłby być krótszy.",),
            "price": ("Cena akceptowalna, choć przydałby się rabat przy większych zamówieniach.",),
            "delivery": ("Dostawa zwykle na czas, czasem brakuje informacji o statusie.",),
            "app": ("Aplikacja działa, ale jest mało intuicyjna.",),
            "invoice": ("Faktury są poprawne, ale przychodzą za późno.",),
            "account-manager": ("Kontakt z opiekunem dobry, tylko trudno go złapać.",),
        },
        "promoter": {
            "support": (
                "Świetna obsługa, problem rozwiązany w kilka minut.",
                "Bardzo miła i kompetentna obsługa klienta.",
            ),
            "price": ("Dobra cena i jakość, polecam.",),
            "delivery": ("Dostawa błyskawiczna, wszystko dotarło w całości.",),
            "app": ("Aplikacja wygodna, zamawiam wszystko przez telefon.",),
            "invoice": ("Faktury zawsze na czas i bez błędów.",),
            "account-manager": ("Nasz opiekun jest bardzo pomocny i zawsze dostępny.",),
        },
    },
    "en": {
        "detractor": {
            "support": (
                "Support has not answered my ticket for a week.",
                "I waited over an hour to reach customer service.",
            ),
            "price": (
                "The price went up without notice, we are looking at other vendors.",
                "Too expensive compared to the competition.",
            ),
            "delivery": (
                "Delivery was late again, three days this time.",
                "The parcel arrived damaged and nobody took responsibility.",
            ),
            "app": (
                "The app keeps crashing at login.",
                "Since the update the app shows no orders.",
            ),
            "invoice": (
                "The invoice was wrong again.",
                "Third time I ask for a corrected invoice.",
            ),
            "account-manager": ("Our account manager changes every month.",),
        },
        "passive": {
            "support": ("Support is fine, but answers could come faster.",),
            "price": ("Price is acceptable, a volume discount would help.",),
            "delivery": ("Delivery is mostly on time, tracking could be better.",),
            "app": ("The app works but is not very intuitive.",),
            "invoice": ("Invoices are correct but arrive late.",),
            "account-manager": ("Good account manager, just hard to reach.",),
        },
        "promoter": {
            "support": ("Great support, solved my problem in minutes.",),
            "price": ("Fair price for great quality.",),
            "delivery": ("Lightning fast delivery, everything arrived intact.",),
            "app": ("The app is great, I order everything from my phone.",),
            "invoice": ("Invoices always on time and correct.",),
            "account-manager": ("Our account manager is very helpful and always available.",),
        },
    },
}


def comment_about(rng: random.Random, *, locale: str, category: str, touchpoint: str) -> str:
    """A comment in `locale`'s language (English unless `pl-PL`) of `category`'s tone."""
    sentences = SENTENCES["pl-PL" if locale == "pl-PL" else "en"][category]
    theme = THEME_OF_TOUCHPOINT.get(touchpoint, "support")
    if rng.random() < 0.4:
        theme = rng.choice(THEMES)
    text = rng.choice(sentences[theme])
    if rng.random() < 0.2:
        other = rng.choice(sentences[rng.choice(THEMES)])
        if other != text:
            text = f"{text} {other}"
    return text
