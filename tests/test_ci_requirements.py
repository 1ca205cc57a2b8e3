"""CI does not go green without the browser tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser_requirements import require_browser

ROOT = Path(__file__).resolve().parent.parent


def test_a_missing_browser_fails_on_ci(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match="not installed"):
        require_browser(tmp_path / "no-chromium", on_ci=True)


def test_a_missing_browser_skips_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_browser(tmp_path / "no-chromium", on_ci=False)


def test_the_test_script_stops_when_the_browser_install_fails() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert script.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in script
    # Each apt-get on a line of its own: under `set -e`, a failure inside an && list
    # (except its last command) would not stop the script.
    apt_lines = [line for line in script.splitlines() if "apt-get " in line]
    assert apt_lines and not any(re.search(r"apt-get[^\n]*&&", line) for line in apt_lines)
    assert 'exit 1' in script.split("apt-get install", 1)[1].split("fi", 1)[0]
