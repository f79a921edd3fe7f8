#!/usr/bin/env bash
# Build the standalone bundle and the Linux .deb from a clean virtual
# environment: dist/quantization-studio/ (one folder) and dist/*.deb.
# Every package comes from packaging/requirements.lock (exact versions and
# hashes; refresh it with packaging/lock.sh), so a rebuild gives the same bundle.
# Usage: packaging/build.sh   (as root it installs the Debian packages it needs:
#        binutils, desktop-file-utils, Qt's libraries including the xcb set,
#        and libpython3.X for Debian's python3)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/_setup.sh"
cd "$ROOT"
BUILD="$ROOT/build/packaging"
VENV="$BUILD/venv"
LOCK="$ROOT/packaging/requirements.lock"
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}"  # reproducible timestamps
export PYTHONHASHSEED=0

# PyInstaller bundles the interpreter's shared libpython: Debian's python3
# finds it only with libpython3.X installed (python_lib_debs). It also copies
# the host libraries Qt's plugins link to, but only those installed: with the
# xcb set always installed, every build holds the same libraries (otherwise a
# build after `apt-get install` of the .deb, which pulls them in, differs).
# shellcheck disable=SC2046
ensure_debs binutils desktop-file-utils "${QT_DEBS[@]}" "${XCB_DEBS[@]}" $(python_lib_debs)

rm -rf "$BUILD" "$ROOT/dist"
mkdir -p "$BUILD"
"$PY" -m venv "$VENV"
# The locked set (pip, PyInstaller and the app's dependencies), wheels only:
# nothing is built from source, and any file whose hash differs is refused.
"$VENV/bin/python" -m pip install -q --require-hashes --only-binary :all: -r "$LOCK"
# The app itself, with the locked setuptools, and nothing more from the index;
# `pip check` then fails when the lock does not satisfy pyproject.toml.
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation "$ROOT"
"$VENV/bin/python" -m pip check >/dev/null || { "$VENV/bin/python" -m pip check; echo "the lock does not satisfy pyproject.toml: run packaging/lock.sh" >&2; exit 1; }
PYI_LOG="$BUILD/pyinstaller.log"
if ! "$VENV/bin/pyinstaller" --noconfirm --clean --log-level WARN \
        --distpath "$ROOT/dist" --workpath "$BUILD/pyinstaller" "$ROOT/packaging/guiapp.spec" > "$PYI_LOG" 2>&1; then
    cat "$PYI_LOG" >&2
    exit 1
fi
# PyInstaller warns once per Qt plugin for every library the host lacks: name
# each library once instead (GTK's belong to a plugin the spec drops).
grep -v "WARNING: Library not found: could not resolve" "$PYI_LOG" >&2 || true
unresolved="$(grep -o "could not resolve '[^']*'" "$PYI_LOG" | cut -d"'" -f2 | sort -u | tr '\n' ' ')"
[ -z "$unresolved" ] || echo "not on this host, so not bundled: $unresolved(full log: $PYI_LOG)" >&2

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
