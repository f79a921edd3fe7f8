# Shared set-up for scripts/run and scripts/test (sourced, not executed).
# Creates .venv, installs the package, and checks the Debian libraries Qt needs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GUIAPP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# Libraries Qt's offscreen platform needs on a bare Debian 12, plus a font
# (without one, text renders as boxes).
QT_DEBS=(libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0 fonts-dejavu-core)
# Extra libraries for real windows on an X display (xcb platform plugin).
XCB_DEBS=(libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0
          libxcb-image0 libxcb-render-util0 libxcb-randr0 libxcb-xkb1 libxcb-xfixes0
          libxcb-sync1 libxcb-shm0 libx11-xcb1)

ensure_debs() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    # python3-venv is only needed when the interpreter cannot make a venv with pip.
    if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then missing+=(python3-venv); fi
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -eq 0 ]; then
        echo "Installing Debian packages: ${missing[*]}" >&2
        # dpkg prints a few lines per package even with -qq: keep them in a log,
        # shown only when something fails.
        local log
        log="$(mktemp -t guiapp-apt.XXXXXX)"
        if { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
            rm -f "$log"
        else
            cat "$log" >&2
            echo "apt-get failed (output above, kept in $log)" >&2
            exit 1
        fi
    else
        echo "Missing Debian packages. Install them, then run this again:" >&2
        echo "  sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
}

# The Debian package holding the shared libpython of $PY, when $PY is Debian's
# own interpreter: its python3 is linked statically and PyInstaller bundles
# libpython3.X.so.1.0 from the separate libpython3.X package. Interpreters
# built elsewhere (pyenv, python.org) bring their own with --enable-shared:
# then this prints nothing.
python_lib_debs() {
    local exe
    exe="$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
    if dpkg -S "$exe" >/dev/null 2>&1; then
        "$PY" -c 'import sys; print("libpython%d.%d" % sys.version_info[:2])'
    fi
}

ensure_venv() {  # $1: pip extras spec, e.g. "" or "[dev]"
    local extras="${1:-}"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "Creating virtual environment in $VENV" >&2
        "$PY" -m venv "$VENV"
    fi
    # Reinstall only when the dependency list changes or extras are missing
    # (an install with "[dev]" also serves a plain run).
    local stamp="$VENV/.guiapp-installed"
    local deps want
    deps="$(sha256sum < "$ROOT/pyproject.toml" | cut -d' ' -f1)"
    want="$deps$extras"
    if [ ! -f "$stamp" ] || { ! grep -qxF "$want" "$stamp" &&
            { [ -n "$extras" ] || ! grep -q "^$deps" "$stamp"; }; }; then
        echo "Installing Quantization Studio and its dependencies into $VENV" >&2
        "$VENV/bin/python" -m pip install -q --upgrade pip >&2
        # setuptools announces every editable install with a warning banner
        # ("Editable installation ... folders with the same name"): information,
        # not a problem. Drop that one message; every other warning still shows.
        PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
            "$VENV/bin/python" -m pip install -q -e "$ROOT$extras" >&2
        echo "$want" > "$stamp"
    fi
}
