#!/usr/bin/env bash
# Smoke test of the frozen bundle and of the .deb built by packaging/build.sh:
#   1. dist/quantization-studio: `guiapp demo` completes and prints its table,
#      `guiapp inspect` works, the wizard starts offscreen, shows its first page
#      and exits cleanly (--self-test);
#   2. the .deb installs (apt-get), the same three checks pass from PATH, the
#      desktop entry validates, and removing the package removes its files.
# Step 2 needs root; without it, it is skipped (and says so).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUNDLE="$ROOT/dist/quantization-studio"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
export QT_QPA_PLATFORM=offscreen
fail() { echo "SMOKE FAILED: $*" >&2; exit 1; }

check() {  # $1: how to call guiapp; $2: where the bundled demo model is
    local guiapp="$1" demo_model="$2" out="$WORK/$RANDOM"
    "$guiapp" demo --out-dir "$out" > "$WORK/demo.txt" 2> "$WORK/demo.err" || { cat "$WORK/demo.err"; fail "$guiapp demo"; }
    grep -q "Accuracy top1" "$WORK/demo.txt" || fail "demo printed no table"
    [ -s "$out/demo.int8.onnx" ] || fail "demo wrote no model"
    sed -n '1,4p' "$WORK/demo.txt"
    "$guiapp" inspect "$demo_model" > "$WORK/inspect.txt" || fail "$guiapp inspect"
    grep -q "image, NCHW" "$WORK/inspect.txt" || fail "inspect output"
    "$guiapp" --self-test > "$WORK/gui.txt" 2>&1 || { cat "$WORK/gui.txt"; fail "$guiapp --self-test"; }
    grep -q "self-test: first page shown" "$WORK/gui.txt" || fail "the wizard did not show its first page"
    echo "ok: demo, inspect, wizard first page ($guiapp)"
}

[ -x "$BUNDLE/guiapp" ] || fail "no bundle at $BUNDLE: run packaging/build.sh first"
check "$BUNDLE/guiapp" "$BUNDLE/_internal/resources/demo/model.onnx"

DEB="$(ls "$ROOT"/dist/quantization-studio_*.deb 2>/dev/null | head -1)"
[ -n "$DEB" ] || fail "no .deb in dist/"
if [ "$(id -u)" -ne 0 ]; then
    echo "skipped: installing $DEB needs root"
    exit 0
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$DEB" > "$WORK/apt.txt" 2>&1 || { cat "$WORK/apt.txt"; fail "apt-get install $DEB"; }
desktop-file-validate /usr/share/applications/quantization-studio.desktop || fail "desktop entry"
[ -f /usr/share/icons/hicolor/256x256/apps/quantization-studio.png ] || fail "icon not installed"
check guiapp /opt/quantization-studio/_internal/resources/demo/model.onnx
# (to a file, not a pipe: grep -q would close it at the first match and the app's next line would hit a broken pipe)
quantization-studio --self-test > "$WORK/launcher.txt" 2>&1 || { cat "$WORK/launcher.txt"; fail "quantization-studio --self-test"; }
grep -q "first page shown" "$WORK/launcher.txt" || fail "quantization-studio launcher"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq quantization-studio > "$WORK/apt.txt" 2>&1 || fail "apt-get remove"
for f in /opt/quantization-studio /usr/bin/guiapp /usr/bin/quantization-studio /usr/share/applications/quantization-studio.desktop; do
    [ ! -e "$f" ] || fail "$f left after removal"
done
echo "ok: .deb installs, runs from PATH, and uninstalls cleanly"
