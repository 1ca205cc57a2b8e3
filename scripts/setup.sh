#!/usr/bin/env bash
# Set up everything in ./.venv: the package (editable), its prebuilt front end, test tools.
# Needs only Python 3.11+ and Node 20 (the front end is built with jlpm, which
# jupyter-builder ships); safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# The build hook (hatch-jupyter-builder) installs the npm packages and builds the
# JupyterLab extension and the anywidget bundle.
"$VENV/bin/python" -m pip install --quiet -e ".[dev]"
# Serve the front end from the build folder itself (a link, as `jlpm build` writes it),
# not from the copy the editable install made.
# (What `jupyter labextension develop` does, without needing the builder on PATH.)
share="$VENV/share/jupyter/labextensions"
mkdir -p "$share"
rm -rf "$share/agentkit-jupyter"
ln -s "$PWD/agentkit_jupyter/labextension" "$share/agentkit-jupyter"
