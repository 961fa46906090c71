"""The built-in templates: package files `closeloop_notifier/templates/<kind>.<locale>.<part>`
(`subject`, `txt`, `html`), one set per message kind and supported language.

A tenant that saved none of its own gets these (`service_layer.template_store`); the files are
ordinary templates of the same sandbox, so a tenant can start from one (GET, edit, PUT).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import SUPPORTED_LOCALES, TemplateSource


@cache
def builtin(kind: Kind, locale: str) -> TemplateSource:
    """The built-in template of `kind` in `locale` (a supported language; ValueError else)."""
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"no built-in templates in {locale!r}: {', '.join(SUPPORTED_LOCALES)}")
    folder = files("closeloop_notifier") / "templates"

    def read(part: str) -> str:
        return (folder / f"{kind.value}.{locale}.{part}").read_text(encoding="utf-8")

    return TemplateSource(subject=read("subject"), text=read("txt"), html=read("html"))
