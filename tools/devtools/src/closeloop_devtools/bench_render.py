"""How long rendering a message takes: every built-in template with its sample data, in one
process, templates compiled once (as the notifier renders them).

    python -m closeloop_devtools.bench_render [--seconds 1] [--out bench/render.md]

Prints (and writes) a table of microseconds per message (subject + text + HTML) by kind and
language, and the messages per second one core renders. Not a test: nothing is asserted.
Each kind renders its one sample again and again, so Babel's memoised dates always hit: with a
fresh deadline per message (as in production) the apology takes about 100 µs, not 80.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from closeloop_notifier.domain.builtin_templates import builtin
from closeloop_notifier.domain.kinds import Kind
from closeloop_notifier.domain.rendering import SUPPORTED_LOCALES, Renderer
from closeloop_notifier.domain.samples import sample_context


def measure(renderer: Renderer, kind: Kind, locale: str, seconds: float) -> float:
    """Microseconds per render of (kind, locale), the median of five runs of `seconds`/5."""
    source, context = builtin(kind, locale), sample_context(kind, locale)
    renderer.render(source, locale, context)  # compile and warm the caches
    runs: list[float] = []
    for _ in range(5):
        count, started = 0, time.perf_counter()
        deadline = started + seconds / 5
        while True:
            for _ in range(50):
                renderer.render(source, locale, context)
            count += 50
            if time.perf_counter() >= deadline:
                break
        runs.append((time.perf_counter() - started) / count * 1e6)
    return sorted(runs)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per kind and language")
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args()
    renderer = Renderer()
    lines = [
        "| kind | locale | µs per message | messages/s on one core |",
        "|---|---|---:|---:|",
    ]
    for kind in Kind:
        for locale in SUPPORTED_LOCALES:
            micros = measure(renderer, kind, locale, args.seconds)
            lines.append(f"| {kind.value} | {locale} | {micros:.0f} | {1e6 / micros:,.0f} |")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
