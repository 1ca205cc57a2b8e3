#!/usr/bin/env bash
# Set up, then open JupyterLab with the extension and the quickstart notebook,
# on the offline demo agents (no key, no network).
set -euo pipefail
cd "$(dirname "$0")/.."

# AGENTKIT_SKIP_SETUP=1 reuses an existing ./.venv (the test of this script does).
if [ "${AGENTKIT_SKIP_SETUP:-}" != 1 ]; then
    bash scripts/setup.sh
fi
VENV=${VENV:-.venv}

args=(--ServerApp.ip=127.0.0.1 --LabApp.news_url= "$@")
if [ "$(id -u)" = 0 ]; then
    args+=(--allow-root)
fi
exec "$VENV/bin/jupyter" lab "${args[@]}" notebooks/quickstart.ipynb
