"""Composing a message: the tenant's template of a kind in a language, rendered with a context.

`Composer` is what the consumer and the campaign expander call; it hides where templates come
from (the tenant's own, else the built-in ones), the tenant's identity (company name, links,
time zone) and the unsubscribe link of a customer's address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from closeloop_common.tenants import TenantDirectory
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import Rendered, Renderer, choose_locale, greeting_for
from closeloop_notifier.domain.tenant_settings import MessagingSettings
from closeloop_notifier.domain.unsubscribe import make_token
from closeloop_notifier.service_layer.template_store import TemplateCache, effective_template


@dataclass(frozen=True, slots=True)
class Sender:
    """The From of a tenant's messages and the company they speak for."""

    address: str
    name: str
    company: str


class Composer:
    def __init__(
        self,
        *,
        renderer: Renderer,
        tenants: TenantDirectory,
        default_sender: Sender,
        unsubscribe_secret: str,
        public_url: str,
        templates: TemplateCache | None = None,
    ) -> None:
        self._renderer = renderer
        self.templates = templates or TemplateCache()
        """Tenants' templates, re-read after a few seconds (a saved one applies everywhere)."""
        self._tenants = tenants
        self._default = default_sender
        self._secret = unsubscribe_secret
        self._public_url = public_url.rstrip("/")

    def sender(self, tenant_id: str) -> Sender:
        tenant = self._tenants.of(tenant_id)
        return Sender(
            address=tenant.from_address or self._default.address,
            name=tenant.from_name or self._default.name,
            company=tenant.company_name or self._default.company,
        )

    def locale(self, tenant_id: str, customer_locale: str | None) -> str:
        """The supported language for a customer (or a team member) of the tenant."""
        return choose_locale(customer_locale, self._tenants.of(tenant_id).default_locale)

    def tenant_context(self, tenant_id: str, settings: MessagingSettings) -> dict[str, Any]:
        return {
            "company_name": self.sender(tenant_id).company,
            "review_url": str(settings.review_url) if settings.review_url else None,
            "referral_url": str(settings.referral_url) if settings.referral_url else None,
            "time_zone": settings.time_zone,
        }

    def unsubscribe_url(self, tenant_id: str, recipient_key: str | None) -> str | None:
        """The one-click link for a customer's address (None without an address)."""
        if recipient_key is None:
            return None
        return f"{self._public_url}/v1/unsubscribe/{make_token(self._secret, tenant_id, recipient_key)}"

    async def compose(
        self,
        session: AsyncSession,
        tenant_id: str,
        kind: Kind,
        locale: str,
        context: Mapping[str, Any],
    ) -> Rendered:
        """The tenant's template of `kind` in `locale` rendered with `context`, to which the
        language and the recipient's salutation (`greeting`) are added."""
        source = await effective_template(session, tenant_id, kind, locale, cache=self.templates)
        full = {**context, "locale": locale}
        full.setdefault("greeting", greeting_for(kind, locale, full))
        return self._renderer.render(source, locale, full)
