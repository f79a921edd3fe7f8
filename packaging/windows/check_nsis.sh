#!/usr/bin/env bash
# Check that makensis accepts the installer script without warnings (-WX),
# against a stand-in bundle folder (the real one is built on Windows).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
STANDIN="$(mktemp -d)"
OUT="$(mktemp -d)"
trap 'rm -rf "$STANDIN" "$OUT"' EXIT
mkdir -p "$STANDIN/_internal/resources"
printf 'MZ stand-in\n' > "$STANDIN/quantization-studio.exe"
printf 'MZ stand-in\n' > "$STANDIN/guiapp.exe"
printf 'data\n' > "$STANDIN/_internal/resources/readme.txt"
VERSION="$(cd "$HERE/../.." && python3 -c 'import re; print(re.search(r"__version__ = \"(.+?)\"", open("guiapp/__init__.py").read()).group(1))')"
cd "$HERE"
makensis -WX -V2 -DVERSION="$VERSION" -DBUNDLE="$STANDIN" -DOUTDIR="$OUT" installer.nsi
ls -la "$OUT"/*.exe
echo "ok: makensis built the installer without warnings"
