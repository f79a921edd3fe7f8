#!/usr/bin/env bash
# CI after the tests: build the bundle and .deb, smoke-test both, check the NSIS script.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/_setup.sh"
# What build.sh needs (see there), in one apt-get run.
# shellcheck disable=SC2046
ensure_debs binutils desktop-file-utils nsis "${QT_DEBS[@]}" "${XCB_DEBS[@]}" $(python_lib_debs)
"$ROOT/packaging/build.sh"
"$ROOT/packaging/smoke.sh"
"$ROOT/packaging/windows/check_nsis.sh"
