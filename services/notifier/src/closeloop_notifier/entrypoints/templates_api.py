"""Templates API: a tenant's own message templates per kind and language, versioned with ETags,
validated when saved, previewed with sample data.

Reading takes the `read` scope; saving and deleting take `admin`, the scope of the
orchestrator's set-up writes. `GET /v1/templates/{kind}/{locale}` answers the template in force
(`source`: `tenant` or `builtin`) with its version as ETag (`"0"`: built-in). `PUT` stores a new
version: If-Match is required once the tenant has a version of its own (428 without it, 412 when
it is not the stored one, with the stored one in ETag); a template that does not render with the
sample data of its kind, complete or with every optional value absent, is refused with 422
`template-refused` listing each problem (part, line, message). `DELETE` brings the built-in
template back under the same If-Match rule. `POST .../preview` renders the template in force, or
a draft of some of its parts, with the sample data and the context values given.

Template language: Jinja2, sandboxed; HTML autoescaped; `trim_blocks` and `lstrip_blocks` on (a
block tag alone on its line leaves no line; end a line with `{% endif +%}` to keep its line
break). Context, filters and limits: see `domain.samples`, `domain.rendering`,
`domain.sandbox`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from closeloop_common.runtime import ServiceRuntime
from closeloop_common.web import (
    AdminTenant,
    IfMatch,
    Problem,
    ReadTenant,
    actor_of,
    expected_version,
    validation_problem,
)
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import Renderer, TemplateRenderError, TemplateSource
from closeloop_notifier.service_layer import template_preview, template_store
from closeloop_notifier.service_layer.template_store import (
    StaleVersion,
    StoredTemplate,
    TemplateCache,
    VersionRequired,
)

SUBJECT_MAX = 1_000
PART_MAX = 100_000
Locale = Literal["pl", "en"]
_CONTEXT_HELP = (
    'values replacing the sample\'s, by name; objects are merged key by key (`{"case": '
    '{"comment": null}}` keeps the rest of the case); dates as ISO 8601 with an offset'
)

Subject = Annotated[
    str,
    Field(
        min_length=1,
        max_length=SUBJECT_MAX,
        description=f"Jinja2 source of the subject, at most {SUBJECT_MAX:,} characters; the "
        "rendered subject is one line of at most 250",
    ),
]
Text = Annotated[
    str,
    Field(
        min_length=1,
        max_length=PART_MAX,
        description=f"Jinja2 source of the plain-text part, at most {PART_MAX:,} characters",
    ),
]
Html = Annotated[
    str,
    Field(
        min_length=1,
        max_length=PART_MAX,
        description=f"Jinja2 source of the HTML part (autoescaped), at most {PART_MAX:,} "
        "characters",
    ),
]


class TemplateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: Subject
    text: Text
    html: Html


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject: Subject | None = None
    text: Text | None = None
    html: Html | None = None
    context: dict[str, Any] = Field(default_factory=dict, description=_CONTEXT_HELP)


def _expected_version(if_match: str | None) -> int | None:
    """None without If-Match: allowed while the tenant has no version of its own (the store
    answers `VersionRequired`, a 428, once it has one)."""
    return None if if_match is None else expected_version(if_match)


def _refused(exc: TemplateRenderError) -> Problem:
    return Problem(
        422,
        "template-refused",
        "The template does not render",
        str(exc)[:2000],
        errors=[problem.json() for problem in exc.problems],
    )


def _version_problem(exc: StaleVersion | VersionRequired) -> Problem:
    etag = {"ETag": f'"{exc.current}"'}
    if isinstance(exc, VersionRequired):
        return Problem(428, "precondition-required", "If-Match required", str(exc), headers=etag)
    return Problem(
        412,
        "version-conflict",
        "The template changed meanwhile",
        str(exc),
        headers=etag,
        current_version=exc.current,
    )


def _answer(stored: StoredTemplate, response: Response) -> dict[str, Any]:
    response.headers["ETag"] = f'"{stored.version}"'
    return stored.json()


def build_templates_router(
    runtime: ServiceRuntime, renderer: Renderer, *, cache: TemplateCache | None = None
) -> APIRouter:
    """The templates API; `cache`: the one message preparation reads through, forgotten at
    each save and delete here."""
    router = APIRouter(prefix="/v1/templates", tags=["templates"])

    @router.get("", summary="Every kind in every language, and whose template is in force")
    async def get_templates(tenant: ReadTenant) -> dict[str, Any]:
        async with runtime.sessions() as session:
            found = await template_store.listing(session, tenant)
        return {"templates": [stored.json(with_source=False) for stored in found]}

    @router.get("/{kind}/{locale}", summary="The template in force (the tenant's or built-in)")
    async def get_template(
        kind: Kind, locale: Locale, tenant: ReadTenant, response: Response
    ) -> dict[str, Any]:
        async with runtime.sessions() as session:
            stored = await template_store.current(session, tenant, kind, locale)
        return _answer(stored, response)

    @router.put(
        "/{kind}/{locale}",
        summary="Store a new version of the tenant's template (refused if it does not render)",
        responses={
            412: {"description": "If-Match is not the stored version"},
            422: {"description": "the template does not render with the sample data"},
            428: {"description": "the tenant has a version: If-Match is required"},
        },
    )
    async def put_template(
        kind: Kind,
        locale: Locale,
        body: TemplateBody,
        tenant: AdminTenant,
        request: Request,
        response: Response,
        if_match: IfMatch = None,
    ) -> dict[str, Any]:
        expected = _expected_version(if_match)
        source = TemplateSource(subject=body.subject, text=body.text, html=body.html)
        try:
            async with runtime.transaction() as tx:
                stored = await template_store.save(
                    tx.session,
                    renderer,
                    tenant_id=tenant,
                    kind=kind,
                    locale=locale,
                    source=source,
                    expected_version=expected,
                    actor=actor_of(request),
                    now=tx.clock.now(),
                    cache=cache,
                )
        except TemplateRenderError as exc:
            raise _refused(exc) from exc
        except (StaleVersion, VersionRequired) as exc:
            raise _version_problem(exc) from exc
        return _answer(stored, response)

    @router.delete(
        "/{kind}/{locale}",
        status_code=status.HTTP_204_NO_CONTENT,
        summary="Go back to the built-in template",
        responses={412: {"description": "stale If-Match"}, 428: {"description": "no If-Match"}},
    )
    async def delete_template(
        kind: Kind, locale: Locale, tenant: AdminTenant, if_match: IfMatch = None
    ) -> None:
        expected = _expected_version(if_match)
        try:
            async with runtime.transaction() as tx:
                await template_store.delete(
                    tx.session,
                    tenant_id=tenant,
                    kind=kind,
                    locale=locale,
                    expected_version=expected,
                    cache=cache,
                )
        except (StaleVersion, VersionRequired) as exc:
            raise _version_problem(exc) from exc

    @router.post(
        "/{kind}/{locale}/preview",
        summary="Render the template in force, or a draft of its parts, with sample data",
        responses={422: {"description": "the draft does not render"}},
    )
    async def preview_template(
        kind: Kind,
        locale: Locale,
        tenant: ReadTenant,
        body: PreviewBody | None = None,
        sample: Annotated[
            Literal["full", "sparse"],
            Query(description="`sparse`: the sample with every optional value absent"),
        ] = "full",
    ) -> dict[str, Any]:
        body = body or PreviewBody()
        draft = {"subject": body.subject, "text": body.text, "html": body.html}
        try:
            async with runtime.sessions() as session:
                rendered, origin = await template_preview.preview(
                    session,
                    renderer,
                    tenant_id=tenant,
                    kind=kind,
                    locale=locale,
                    draft=draft,
                    overrides=body.context,
                    sparse=sample == "sparse",
                )
        except ValueError as exc:
            raise validation_problem(
                [{"location": ["body", "context"], "message": str(exc), "kind": "value_error"}]
            ) from exc
        except TemplateRenderError as exc:
            raise _refused(exc) from exc
        return {
            "kind": kind.value,
            "locale": locale,
            "source": origin,
            "subject": rendered.subject,
            "text": rendered.text,
            "html": rendered.html,
        }

    return router
