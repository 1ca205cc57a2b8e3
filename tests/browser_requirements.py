"""What the browser tests need, and what happens when it is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def require_browser(chromium: Path, *, on_ci: bool) -> None:
    """Skip the browser tests when Chromium or Playwright is missing, except on CI
    (``CI`` set), where that fails them: CI must not go green without them."""
    problems = []
    if not chromium.exists():
        problems.append(
            f"{chromium} is not installed (apt-get install chromium); "
            "browser tests need a real Chromium"
        )
    if importlib.util.find_spec("playwright") is None:
        problems.append("the playwright Python package is missing")
    if problems:
        message = "; ".join(problems)
        if on_ci:
            pytest.fail(message)
        pytest.skip(message)
