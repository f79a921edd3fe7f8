#!/usr/bin/env bash
# Refresh packaging/requirements.lock, the exact versions and hashes the
# bundle is built from: the newest releases allowed by pyproject.toml's
# ranges and packaging/requirements.in, for every platform (Linux, Windows,
# macOS), Python 3.11. Review the diff, update packaging/THIRD_PARTY.md and any
# version named in the READMEs (tests/test_lock.py checks them), rebuild.
# Usage: packaging/lock.sh [extra uv pip compile options, e.g. --upgrade-package onnxruntime]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
UV_VERSION=0.13.9
TOOLS="$ROOT/build/lock-tools"
if [ ! -x "$TOOLS/bin/uv" ] || [ "$("$TOOLS/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    rm -rf "$TOOLS"
    "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/python" -m pip install -q "uv==$UV_VERSION"
fi
# Without --upgrade, versions already in the lock are kept when still allowed.
"$TOOLS/bin/uv" pip compile --no-config --quiet \
    --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "packaging/lock.sh" \
    --output-file packaging/requirements.lock \
    "$@" pyproject.toml packaging/requirements.in
echo "wrote packaging/requirements.lock"
