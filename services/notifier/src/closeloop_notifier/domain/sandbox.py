"""The Jinja2 environment tenant templates run in: sandboxed, immutable, strict, and metered.

A template is code a tenant's admin writes; the data it is given (customer comments and names) is
never code: it only ever arrives as context values, so `{{ 7*7 }}` in a comment prints as typed.

What a template may do is Jinja2's `ImmutableSandboxedEnvironment` (no attribute starting with
`_`, no internals of functions, frames or generators, no mutation of lists and dicts) with
`StrictUndefined` (an unknown name or attribute is an error, found when the template is saved),
narrowed further because one tenant's template must not stall the notifier for everyone:

- globals: only `range` and `dict` (no `namespace`, `cycler`, `joiner`, `lipsum`: a namespace
  carries state across loop iterations, which is what doubles a string until memory runs out);
- no `str.format` / `format_map` and no `random` filter; the HTML environment has no `safe`
  filter and refuses `{% autoescape false %}` (customer text is always escaped in HTML);
- every render has a budget of steps (calls, `range` items, filter calls with big numbers):
  over it, the render fails; `range` yields at most `MAX_RANGE` items; `*`, `**` and `%` refuse
  results past a size (a 100,000-item sequence, a 10,000-bit integer, a 1,000-wide field);
  string arguments of calls and the output are capped in length.

These bound the obvious amplifiers (loops, recursion, repetition, exponentiation, padding); a
deliberately crafted template can still be slow within them, which is why validation runs off
the event loop and the saved size is limited (`entrypoints.templates_api`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import wraps
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

MAX_STEPS = 100_000  # calls, range items and guarded filter calls per rendered part
MAX_RANGE = 10_000  # items of one `range(...)`
MAX_SEQUENCE = 100_000  # items (or characters) a `*` may produce
MAX_INT_BITS = 10_000  # size of an integer `*` or `**` may produce
MAX_NUMBER_ARGUMENT = 10_000  # a width, count or length given to a built-in filter or str method
MAX_STRING_ARGUMENT = 200_000  # characters of a string passed to a call (a macro, a method)
MAX_OUTPUT = 1_000_000  # characters of one rendered part

# A `%` conversion with a `*` width/precision or one of 4+ digits: `'%99999d' % 1`.
_WIDE_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(?:\*|\d{4,}|\d*\.(?:\*|\d{4,}))")
_REMOVED_FILTERS = frozenset({"random", "format"})  # `format` is `%`: replaced by a guarded one
_REMOVED_HTML_FILTERS = frozenset({"safe"})


class _Meter:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_STEPS

    def step(self, count: int = 1) -> None:
        self.left -= count
        if self.left < 0:
            raise SecurityError(f"the template takes too long (over {MAX_STEPS} steps)")


_meter: ContextVar[_Meter | None] = ContextVar("template_meter", default=None)


def _step(count: int = 1) -> None:
    meter = _meter.get()
    if meter is not None:
        meter.step(count)


def metered(chunks: Iterator[str]) -> str:
    """The output of a template's `generate()`, under a fresh step budget and the output cap."""
    token = _meter.set(_Meter())
    try:
        parts: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise SecurityError(f"the output is over {MAX_OUTPUT} characters")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _meter.reset(token)


def _range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    for number in numbers:
        _step()
        yield number


def _check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, str) and len(value) > MAX_STRING_ARGUMENT:
            raise SecurityError(f"a string argument is over {MAX_STRING_ARGUMENT} characters")


def _check_numbers(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, int | float) and abs(value) > MAX_NUMBER_ARGUMENT:
            raise SecurityError(f"a number argument is over {MAX_NUMBER_ARGUMENT}")


def _check_percent(template: Any) -> None:
    if isinstance(template, str) and _WIDE_PERCENT.search(template):
        raise SecurityError("a %-format field wider than 999 or with a * width")


def _guarded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """A built-in filter that counts as a step and refuses big numbers (`center(10**9)`);
    `format`'s arguments are the values it prints, its format string is checked instead."""

    # A filter marked pass_context (or eval_context, environment) gets that object first.
    first = 1 if hasattr(function, "jinja_pass_arg") else 0

    @wraps(function)  # keeps `jinja_pass_arg`
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _step()
        options = args[first + 1 :]
        if name != "format":
            _check_numbers(options, kwargs)
        if name == "replace" and len(options) >= 2:
            _check_replace(args[first], options[0], options[1])
        return function(*args, **kwargs)

    return guarded


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
        occurrences = len(text) + 1 if old == "" else text.count(old)
        if occurrences * len(new) > MAX_SEQUENCE:
            raise SecurityError(f"replace() would make over {MAX_SEQUENCE} characters")


def _percent(left: Any, right: Any) -> Any:
    _check_percent(left)
    return left % right


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_percent(value)
    return str(value % (kwargs or args))


def _times(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(count, int) and isinstance(seq, str | list | tuple):
            if len(seq) * max(count, 0) > MAX_SEQUENCE:
                raise SecurityError(f"'*' would make over {MAX_SEQUENCE} items")
            return left * right
    both_int = isinstance(left, int) and isinstance(right, int)
    if both_int and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"'*' would make an integer over {MAX_INT_BITS} bits")
    return left * right


def _power(left: Any, right: Any) -> Any:
    both_int = isinstance(left, int) and isinstance(right, int)
    if both_int and abs(left) > 1 and left.bit_length() * abs(right) > MAX_INT_BITS:
        raise SecurityError(f"'**' would make an integer over {MAX_INT_BITS} bits")
    return left**right


class TemplateEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox described above; `html` decides autoescaping (and `safe`'s absence)."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, *, html: bool) -> None:
        super().__init__(
            autoescape=html,
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,  # compiled templates are cached by the renderer, by source
        )
        self.html = html
        self.globals = {"range": _range, "dict": dict}
        removed = _REMOVED_FILTERS | (_REMOVED_HTML_FILTERS if html else frozenset())
        self.filters = {
            name: _guarded(name, function)
            for name, function in self.filters.items()
            if name not in removed
        }
        self.filters["format"] = _guarded("format", _format)
        self.binop_table = {**self.binop_table, "*": _times, "**": _power, "%": _percent}

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in ("format", "format_map"):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is refused outright (`is_safe_attribute`)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # The context is plain dicts: `case.owner` is the key first (faster than a failed
        # attribute lookup, and a key named `items` is the data, not the dict method).
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _step()
        _check_arguments(args, kwargs)
        if isinstance(getattr(__obj, "__self__", None), str):
            _check_numbers(args, kwargs)
            if getattr(__obj, "__name__", "") == "replace" and len(args) >= 2:
                _check_replace(__obj.__self__, args[0], args[1])
        return super().call(__context, __obj, *args, **kwargs)

    def refused_constructs(self, ast: nodes.Template) -> list[tuple[str, int]]:
        """What the parsed template may not use here, with its line: `{% autoescape false %}`
        in HTML (it would print customer text unescaped)."""
        found: list[tuple[str, int]] = []
        if not self.html:
            return found
        for modifier in ast.find_all(nodes.EvalContextModifier):
            assert isinstance(modifier, nodes.EvalContextModifier)
            if any(option.key == "autoescape" for option in modifier.options):
                found.append(("autoescape cannot be changed in the HTML part", modifier.lineno))
        return found
