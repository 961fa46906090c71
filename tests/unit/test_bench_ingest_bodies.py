"""The bodies `make bench-ingest` posts are webhooks ingest's Typeform adapter accepts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from closeloop_devtools.typeform_bodies import SIGNATURE_HEADER, category, write_bodies
from closeloop_ingest.domain.sources.base import Delivery, Responses, SourceDefinition
from closeloop_ingest.domain.sources.typeform import ADAPTER


def test_every_bench_body_is_a_signed_new_typeform_response(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    path = tmp_path / "bodies.tsv"
    write_bodies(path, secret="s3cret", run="r1", count=20, first=0, submitted_at=now)
    source = SourceDefinition(tenant_id="bench", name="load", kind="typeform", secrets=["s3cret"])
    ids, categories = set(), set()
    for line in path.read_bytes().splitlines():
        signature, _, body = line.partition(b"\t")
        delivery = Delivery(
            body=body,
            headers={SIGNATURE_HEADER.lower(): signature.decode()},
            content_type="application/json",
            received_at=now + timedelta(seconds=1),
        )
        ADAPTER.verify(delivery, source)
        parsed = ADAPTER.parse(delivery, source)
        assert isinstance(parsed, Responses)
        response = parsed.submissions[0].response
        ids.add(response.response_id)
        categories.add(category(response.score))
        assert response.comment
    assert len(ids) == 20
    assert categories == {"promoter", "passive", "detractor"}
