#!/usr/bin/env bash
# Build the standalone bundle and the Linux .deb from a clean virtual
# environment: dist/quantization-studio/ (one folder) and dist/*.deb.
# Usage: packaging/build.sh            (needs python3 with a shared libpython, binutils, dpkg-deb)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
BUILD="$ROOT/build/packaging"
VENV="$BUILD/venv"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"  # reproducible timestamps
export PYTHONHASHSEED=0

rm -rf "$BUILD" "$ROOT/dist"
mkdir -p "$BUILD"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# The app with its pinned-range dependencies, and PyInstaller (pinned: its
# hooks for PySide6 and onnxruntime are what this spec was checked with).
"$VENV/bin/python" -m pip install -q "$ROOT" "pyinstaller==6.22.0"
"$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$BUILD/pyinstaller" "$ROOT/packaging/guiapp.spec"

# The interpreter's own libraries carry debug info when built from source
# (pyenv): 22 MB of libpython alone; Pillow's _imaging 2.5 MB. Strip debug
# info from those, and nothing else (never numpy's OpenBLAS).
for f in "$ROOT"/dist/quantization-studio/_internal/libpython3*.so* "$ROOT"/dist/quantization-studio/_internal/python3*/lib-dynload/*.so \
         "$ROOT"/dist/quantization-studio/_internal/PIL/*.so; do
    [ -f "$f" ] && strip --strip-debug "$f"
done

VERSION="$("$VENV/bin/python" -c 'import guiapp; print(guiapp.__version__)')"
"$ROOT/packaging/linux/make_deb.sh" "$ROOT/dist/quantization-studio" "$VERSION" "$ROOT/dist"

echo
echo "bundle:  $(du -sh --apparent-size "$ROOT/dist/quantization-studio" | cut -f1)  dist/quantization-studio/"
echo "package: $(du -h --apparent-size "$ROOT"/dist/*.deb | cut -f1)  $(ls "$ROOT"/dist/*.deb)"
