"""Versions of a response and suspected automation: pure rules, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from closeloop_ingest.domain.responses import CanonicalResponse
from closeloop_ingest.domain.versions import suspicion, verdict, version_time

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("same_content", "offset", "expected"),
    [
        (True, timedelta(0), "duplicate"),
        (True, timedelta(hours=1), "duplicate"),
        (True, -timedelta(hours=1), "duplicate"),
        (False, timedelta(seconds=1), "correction"),
        (False, -timedelta(seconds=1), "stale"),
        (False, timedelta(0), "conflict"),
    ],
)
def test_the_verdict_on_a_response_id_seen_before(
    same_content: bool, offset: timedelta, expected: str
) -> None:
    assert (
        verdict(
            stored_fingerprint="a",
            stored_version_at=T0,
            fingerprint="a" if same_content else "b",
            version_at=T0 + offset,
        )
        == expected
    )


def response(comment: str | None = None, **changes: object) -> CanonicalResponse:
    fields: dict[str, object] = {
        "response_id": "r1",
        "survey_id": "s",
        "customer": {"id": "c"},
        "score": 10,
        "comment": comment,
        "answered_at": (T0 + timedelta(seconds=4)).isoformat(),
    }
    return CanonicalResponse.model_validate(fields | changes)


def test_the_version_time_is_the_update_time_else_the_answer_time() -> None:
    assert version_time(response()) == T0 + timedelta(seconds=4)
    updated = T0 + timedelta(days=1)
    assert version_time(response(updated_at=updated.isoformat())) == updated


def test_no_comment_seconds_after_the_invitation_is_suspected() -> None:
    assert suspicion(response(), user_agent=None, invited_at=T0) == (
        "answered_right_after_invitation",
    )


def test_a_scanner_user_agent_without_comment_is_suspected() -> None:
    agent = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
    assert suspicion(response(), user_agent=agent, invited_at=None) == ("link_scanner_user_agent",)
    both = suspicion(response(), user_agent="python-requests/2.32", invited_at=T0)
    assert both == ("answered_right_after_invitation", "link_scanner_user_agent")


@pytest.mark.parametrize(
    ("comment", "agent", "invited_at"),
    [
        ("Szybko i sprawnie", "python-requests/2.32", T0),  # a comment: a person wrote it
        (None, "Mozilla/5.0 (Windows NT 10.0) Firefox/132.0", T0 - timedelta(minutes=5)),
        (None, None, T0 + timedelta(minutes=1)),  # invited after answering: another invitation
        (None, None, None),
    ],
)
def test_a_person_s_answer_is_not_suspected(
    comment: str | None, agent: str | None, invited_at: datetime | None
) -> None:
    assert suspicion(response(comment), user_agent=agent, invited_at=invited_at) == ()


def test_the_window_is_configurable() -> None:
    late = response(answered_at=(T0 + timedelta(seconds=30)).isoformat())
    assert suspicion(late, user_agent=None, invited_at=T0) == ()
    assert suspicion(late, user_agent=None, invited_at=T0, window=timedelta(minutes=1)) == (
        "answered_right_after_invitation",
    )
