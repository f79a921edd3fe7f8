#!/usr/bin/env bash
# CI after the tests: build the bundle and .deb, smoke-test both, check the NSIS script.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/_setup.sh"
# shellcheck disable=SC2046  # python_lib_debs: libpython3.X for Debian's python3 (see build.sh)
ensure_debs binutils desktop-file-utils nsis "${QT_DEBS[@]}" $(python_lib_debs)
"$ROOT/packaging/build.sh"
"$ROOT/packaging/smoke.sh"
"$ROOT/packaging/windows/check_nsis.sh"
