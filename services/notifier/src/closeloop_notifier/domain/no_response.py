"""Lack-of-response cases as templates see them: a key contact of a key account left a survey
invitation unanswered, so the case has no answer (no score, category or comment).

Such a case's `case` in a template context has `category` "no_response", `score` and `comment`
None, and what was not answered: `survey_id`, `invited_at`, `silent_days` (the silence window
the contact let pass) and `invitation_id`. Each may be None when the notifier does not know it
(`case.no_response_opened.v1` tells all of them; an SLA alert or a reassignment only what the
notifier's own copy of the invitation holds; the digest none of them yet). Templates branch on
`case.category == "no_response"` and print "no answer to <survey> (invited <date>)" instead of
the score and the comment.

The orchestrator keys such a case by `no-response:<invitation id>` in place of a response id
(`RESPONSE_PREFIX`), which is how an SLA alert, which carries only that key, names the
invitation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

NO_RESPONSE = "no_response"
"""The category (case type) of a lack-of-response case."""
RESPONSE_PREFIX = "no-response:"


def invitation_of(response_id: str) -> str | None:
    """The invitation a lack-of-response case's key names (None for a response's id)."""
    if not response_id.startswith(RESPONSE_PREFIX):
        return None
    return response_id.removeprefix(RESPONSE_PREFIX) or None


@dataclass(frozen=True, slots=True)
class Unanswered:
    """What a lack-of-response case's contact did not answer (None: not known here)."""

    invitation_id: str | None = None
    survey_id: str | None = None
    invited_at: datetime | None = None
    silent_days: float | None = None

    def context(self) -> dict[str, Any]:
        """The keys a template's `case` gets for a lack-of-response case (module docstring)."""
        return {
            "invitation_id": self.invitation_id,
            "survey_id": self.survey_id,
            "invited_at": self.invited_at,
            "silent_days": self.silent_days,
        }
