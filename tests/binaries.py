"""Tools from Debian packages that some tests run (promtool, prometheus: the `prometheus` package).

`make test` installs them when it runs as root; a test that needs one skips only where it cannot
be installed (not root) and fails otherwise, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

PACKAGES = {"promtool": "prometheus", "prometheus": "prometheus"}


def required_binary(name: str) -> str:
    """The path of `name`; skips the test when it is missing and cannot be installed here."""
    found = shutil.which(name)
    if found is not None:
        return found
    install = f"apt-get install -y {PACKAGES[name]}"
    if os.geteuid() != 0:
        pytest.skip(f"{name} is not installed (as root: {install})")
    pytest.fail(f"{name} is not installed: {install} (or make test, which installs it)")
