"""What a response id seen before means, and whether a response looks automated. Pure.

Versions. A stored response has a fingerprint (its content) and a version time (`updated_at` the
survey tool gave, else the answer time). Another delivery with the same id is:
- the same content: a *duplicate* (whatever its times): answered 200, nothing published;
- other content, later version time: a *correction*, published as the next version;
- other content, earlier version time: *stale* (an older version arriving late): answered 200,
  nothing changes;
- other content, the same version time: a *conflict* (409): two different answers claim to be
  the same version, and only the sender can say which is right.

Suspected automation. Email security scanners open every link of a message, including the score
links of an NPS email, which records a score nobody gave. A response is suspected when it has no
comment and either arrives within `window` of the respondent's invitation to that survey or comes
from a known scanner's user agent. It is kept, never deleted, and left out of the published
stream until someone confirms it.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

from closeloop_common.events import SuspicionReason
from closeloop_ingest.domain.responses import CanonicalResponse

Verdict = Literal["duplicate", "correction", "stale", "conflict"]


def verdict(
    *,
    stored_fingerprint: str,
    stored_version_at: datetime,
    fingerprint: str,
    version_at: datetime,
) -> Verdict:
    if fingerprint == stored_fingerprint:
        return "duplicate"
    if version_at > stored_version_at:
        return "correction"
    if version_at < stored_version_at:
        return "stale"
    return "conflict"


def version_time(response: CanonicalResponse) -> datetime:
    return response.updated_at or response.answered_at


DEFAULT_WINDOW = timedelta(seconds=10)

# User agents of link scanners and previewers seen following survey links (email security
# gateways, chat link previews, generic HTTP clients that no respondent's browser sends).
LINK_SCANNERS = re.compile(
    r"barracuda|mimecast|proofpoint|urldefense|safelinks|safe links|trendmicro|"
    r"forcepoint|symantec|messagelabs|fireeye|zscaler|sophos|cisco.*(esa|ironport)|"
    r"bingpreview|google-safety|googleimageproxy|slackbot|linkexpanding|skypeuripreview|"
    r"microsoftpreview|headlesschrome|phantomjs|python-requests|python-httpx|go-http-client|"
    r"curl/|wget/|libwww-perl|java/|okhttp|apache-httpclient|scrapy|bot\b|spider|crawler",
    re.IGNORECASE,
)


def suspicion(
    response: CanonicalResponse,
    *,
    user_agent: str | None,
    invited_at: datetime | None,
    window: timedelta = DEFAULT_WINDOW,
) -> tuple[SuspicionReason, ...]:
    """Why the response looks automated; empty when it does not (see the module docstring)."""
    if response.comment and response.comment.strip():
        return ()
    reasons: list[SuspicionReason] = []
    if invited_at is not None and timedelta(0) <= response.answered_at - invited_at <= window:
        reasons.append("answered_right_after_invitation")
    if user_agent and LINK_SCANNERS.search(user_agent):
        reasons.append("link_scanner_user_agent")
    return tuple(reasons)
