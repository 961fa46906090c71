"""Part B of `make bench-notifier`: one "you said, we did" campaign to a 100,000-strong audience.

`measure_campaign` fills the notifier's audience through its real consumer: the invitations and
responses of `notifier_feed.Audience` are in the responses topic before the notifier starts, and
the run waits until `notifier.invitations`, `contacts` and `respondents` hold them all. Then it
publishes one `change.summary.v1` (the respondents' response ids, and the segment of everyone
invited in the survey) and times, from that event's production:
- until the campaign is opened (`campaigns.created_at`, the consumer's commit);
- the expansion: from opened to `expanded_at` (every recipient's message rendered and stored,
  page by page);
- the sending: the first and last email the sink accepts, and the emails/s in between;
- the whole: from the event to the last email.
The tenant's rate is `notifier_process.CAMPAIGN_RATE`, so the throttle does not bind.

The checks: the sink holds one email per distinct address of the audience (respondents listed
twice get one), none twice (by Message-ID and by recipient), none with a missing header; the
table has every campaign message `sent` and the campaign counts them as its recipients.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from closeloop_common.settings import CommonSettings
from closeloop_devtools.notifier_feed import Audience, produce
from closeloop_devtools.notifier_process import (
    Meter,
    Usage,
    count,
    running_notifier,
    sent_ids,
    statuses,
)
from closeloop_devtools.notifier_sink import Accepted, SinkProcess
from closeloop_devtools.profiling import Profile, summarise
from closeloop_devtools.scoring_watch import BenchTimeout

POLL_SECONDS = 0.25
CAMPAIGN = sa.text(
    "SELECT campaign_id::text AS id, status, recipients, created_at, expanded_at "
    "FROM notifier.campaigns"
)


@dataclass(frozen=True, slots=True)
class Campaign:
    audience: Audience
    events: int  # audience events produced
    fill_seconds: float  # from the notifier's start until the audience was stored
    opened_after: float  # seconds from the change-summary event
    expanded_after: float  # from the event until every message was stored
    first_after: float  # from the event to the first email
    last_after: float  # from the event to the last email
    emails: int
    usage: Usage
    problems: list[str]
    languages: dict[str, int]
    profile: Profile | None

    @property
    def expansion_seconds(self) -> float:
        return self.expanded_after - self.opened_after

    @property
    def send_rate(self) -> float:
        return (self.emails - 1) / (self.last_after - self.first_after)

    def rows(self) -> list[tuple[str, str]]:
        a = self.audience
        return [
            (
                "campaign: audience",
                f"{a.invitations:,} invitations (with contacts) and {a.respondents:,} respondents "
                f"({a.respondents - a.uninvited:,} of them invited, {a.uninvited:,} not): "
                f"{a.recipients:,} distinct addresses; {self.events:,} events through the "
                f"notifier's consumer, stored {self.fill_seconds:.1f} s after its start",
            ),
            (
                "campaign: from change.summary.v1 to the last email",
                f"**{self.last_after:.1f} s** for {self.emails:,} emails "
                f"({self.emails / self.last_after:,.0f} emails/s overall)",
            ),
            (
                "campaign: expansion (rendered and stored)",
                f"opened {self.opened_after:.2f} s after the event; every message stored "
                f"{self.expansion_seconds:.1f} s later "
                f"({a.recipients / self.expansion_seconds:,.0f} messages/s)",
            ),
            (
                "campaign: sending (overlaps the expansion)",
                f"first email {self.first_after:.2f} s after the event, last {self.last_after:.1f} "
                f"s: {self.send_rate:,.0f} emails/s; after the expansion ended "
                f"{max(0.0, self.last_after - self.expanded_after):.1f} s more",
            ),
            (
                "campaign: languages of the emails",
                ", ".join(f"{k} {v:,}" for k, v in sorted(self.languages.items())),
            ),
            ("campaign: CPU", self.usage.describe()),
        ]


async def measure_campaign(
    engine: AsyncEngine,
    env: dict[str, str],
    settings: CommonSettings,
    sink: SinkProcess,
    *,
    audience: Audience,
    port: int,
    timeout: float,
    tmp: Path,
    postmaster: int | None,
) -> Campaign:
    """The campaign (module docstring)."""
    events, _ = await produce(settings, audience.events(), client_id="bench-notifier-audience")
    sink.reset()
    started = time.perf_counter()
    async with running_notifier(
        env, port=port, log=tmp / "campaign.log", profile=tmp / "campaign.profile"
    ) as proc:
        wanted = (
            ("invitations", audience.invitations),
            ("respondents", audience.respondents),
            ("contacts", audience.recipients),
        )
        while True:
            found = [await count(engine, f"SELECT count(*) FROM notifier.{t}") for t, _ in wanted]
            if all(n >= w for n, (_, w) in zip(found, wanted, strict=True)):
                break
            _still_going(proc.poll(), time.perf_counter() - started, timeout, f"audience {found}")
            await asyncio.sleep(POLL_SECONDS)
        fill_seconds = time.perf_counter() - started
        meter = Meter(proc.pid, sink, postmaster)
        event = audience.change_summary()
        await produce(settings, [event], client_id="bench-notifier-change")
        produced_at = event.time.timestamp()
        while True:
            accepted = int(sink.stats()["accepted"])
            if accepted >= audience.recipients:
                break
            waited = time.time() - produced_at
            _still_going(proc.poll(), waited, timeout, f"{accepted:,} campaign emails")
            await asyncio.sleep(POLL_SECONDS)
        usage = meter.read()
    async with engine.connect() as conn:
        campaign = (await conn.execute(CAMPAIGN)).one()
    emails = sink.dump(tmp / "campaign.sink.tsv")
    times = sorted(a.at for a in emails)
    problems = await _check(engine, sink, audience, campaign, emails)
    languages = Counter(a.language for a in emails)
    return Campaign(
        audience=audience,
        events=events,
        fill_seconds=fill_seconds,
        opened_after=campaign.created_at.timestamp() - produced_at,
        expanded_after=(campaign.expanded_at.timestamp() if campaign.expanded_at else times[-1])
        - produced_at,
        first_after=times[0] - produced_at,
        last_after=times[-1] - produced_at,
        emails=len(emails),
        usage=usage,
        problems=problems,
        languages=dict(languages),
        profile=summarise(tmp / "campaign.profile", project="closeloop_notifier/"),
    )


def _still_going(code: int | None, now: float, timeout: float, what: str) -> None:
    if code is not None:
        raise RuntimeError(f"the notifier exited with {code} at {what}")
    if now > timeout:
        raise BenchTimeout(f"{what} after {now:.0f} s and --timeout is over")


async def _check(
    engine: AsyncEngine,
    sink: SinkProcess,
    audience: Audience,
    campaign: sa.Row[Any],
    emails: list[Accepted],
) -> list[str]:
    problems = []
    stats = sink.stats()
    if stats["duplicates"]:
        problems.append(f"{stats['duplicates']:,} emails accepted twice (same Message-ID)")
    if stats["bad"]:
        problems.append(f"{stats['bad']:,} emails missing headers: {stats['reasons'][:3]}")
    recipients = {e.recipient for e in emails}
    if len(recipients) != len(emails):
        problems.append(f"{len(emails) - len(recipients):,} addresses got two emails")
    if len(emails) != audience.recipients:
        problems.append(f"{len(emails):,} emails for {audience.recipients:,} addresses")
    if {e.campaign_id for e in emails} != {campaign.id}:
        problems.append("emails of another campaign (or none) in the sink")
    of_campaign = f"campaign_id = '{campaign.id}'"
    by_status = await statuses(engine, of_campaign)
    if by_status != {"sent": audience.recipients}:
        problems.append(f"campaign messages: {by_status}")
    if campaign.recipients != audience.recipients:
        problems.append(f"the campaign counts {campaign.recipients:,} recipients")
    in_table = await sent_ids(engine, of_campaign)
    if in_table != {e.message_id for e in emails}:
        problems.append("the sink's Message-IDs are not the table's sent messages")
    return problems
