"""Ingest's settings: environment variables on top of `CommonSettings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from closeloop_common.settings import CommonSettings


class IngestSettings(CommonSettings):
    webhook_max_body_bytes: int = Field(
        256 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="largest webhook body accepted (413 beyond); the canonical API has "
        "MAX_REQUEST_BODY_BYTES",
    )
    public_base_url: str | None = Field(
        None,
        pattern=r"^https?://[^\s]+$",
        description="how survey tools reach ingest (`https://nps.example.com`), for the webhook "
        "URLs the sources API returns; unset: the request's own base URL",
    )
    sources_file: Path | None = Field(
        None,
        description="TOML or JSON file of source definitions applied at start (GitOps); a secret "
        'written "env:NAME" is read from the environment variable NAME',
    )
    sources_refresh_seconds: float = Field(
        1.0, gt=0, le=300, description="how often a replica checks for sources changed elsewhere"
    )
    group_commit_max_batch: int = Field(
        200, ge=1, le=5000, description="requests written in one transaction at most"
    )
    group_commit_max_wait_ms: float = Field(
        2.0, ge=0, le=100, description="how long a batch waits for more requests"
    )
    group_commit_concurrency: int = Field(
        2,
        ge=1,
        le=16,
        description="shared transactions in flight at once: while one waits on the database "
        "the next is prepared",
    )
    suspicion_window_seconds: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="a response without comment this soon after its invitation is suspected "
        "automated (an email link scanner)",
    )
    fetch_concurrency: int = Field(
        4, ge=1, le=64, description="vendor API fetches (SurveyMonkey, Qualtrics) at a time"
    )
    fetch_timeout_seconds: float = Field(10.0, gt=0, le=120)
    fetch_retry_base_seconds: float = Field(
        1.0,
        gt=0,
        le=300,
        description="wait before the first retry of a failing vendor API (doubling after)",
    )
    fetch_max_backoff_seconds: float = Field(
        900.0, ge=1, description="longest wait between retries of a failing vendor API"
    )
    fetch_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="how often the fetch worker looks for fetches that came due (a webhook "
        "wakes it at once)",
    )
    delivery_retention_days: float = Field(
        30.0, gt=0, description="raw webhook deliveries are deleted after this long"
    )

    # The other services' APIs, asked for their part of a respondent's export (article 15).
    ingest_scoring_url: str = Field(
        "http://127.0.0.1:8002", min_length=1, description="scoring's API, for privacy exports"
    )
    ingest_orchestrator_url: str = Field(
        "http://127.0.0.1:8003",
        min_length=1,
        description="the orchestrator's API, for privacy exports",
    )
    ingest_notifier_url: str = Field(
        "http://127.0.0.1:8004", min_length=1, description="the notifier's API, for privacy exports"
    )
    ingest_privacy_timeout_seconds: float = Field(
        10, gt=0, le=120, description="how long a service may take to answer its export"
    )
