#!/usr/bin/env bash
# Set up, then run every check: ruff, mypy, and the whole pytest suite (browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
VENV=${VENV:-.venv}

# Browser tests drive Debian's Chromium (a Playwright browser download does not work here);
# the Redis backend tests start Debian's redis-server. One apt-get update for both.
# On CI (CI set) they must run: a failed install is an error, and so is a missing package.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    elif [ -n "${CI:-}" ]; then
        echo "error: ${missing[*]} missing and cannot be installed here (not root)" >&2
        exit 1
    else
        echo "warning: ${missing[*]} missing; the tests that need them will be skipped" >&2
    fi
fi

"$VENV/bin/ruff" check .
"$VENV/bin/mypy"

set +e
"$VENV/bin/python" -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
