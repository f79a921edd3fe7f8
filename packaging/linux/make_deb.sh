#!/usr/bin/env bash
# Wrap a PyInstaller bundle into a .deb: the bundle in /opt/quantization-studio,
# launchers in /usr/bin, a desktop entry and hicolor icons.
# Usage: make_deb.sh BUNDLE_DIR VERSION OUT_DIR
set -euo pipefail
BUNDLE="$1"; VERSION="$2"; OUT="$3"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
ARCH="$(dpkg --print-architecture)"
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT

install -d "$STAGE/opt" "$STAGE/usr/bin" "$STAGE/usr/share/applications" "$STAGE/DEBIAN"
cp -a "$BUNDLE" "$STAGE/opt/quantization-studio"
# One executable serves both names: with a sub-command the CLI, without the wizard.
for name in guiapp quantization-studio; do
    printf '#!/bin/sh\nexec /opt/quantization-studio/guiapp "$@"\n' > "$STAGE/usr/bin/$name"
    chmod 0755 "$STAGE/usr/bin/$name"
done
install -m 0644 "$HERE/quantization-studio.desktop" "$STAGE/usr/share/applications/"
(cd "$ROOT/resources/icons" && find hicolor -type f) | while read -r f; do
    install -D -m 0644 "$ROOT/resources/icons/$f" "$STAGE/usr/share/icons/$f"
done
SIZE_KB="$(du -sk "$STAGE" | cut -f1)"
sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE_KB/" "$HERE/control.in" > "$STAGE/DEBIAN/control"
install -m 0755 "$HERE/postinst" "$HERE/postrm" "$STAGE/DEBIAN/"
find "$STAGE" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
desktop-file-validate "$STAGE/usr/share/applications/quantization-studio.desktop"
dpkg-deb --root-owner-group -Zxz --build "$STAGE" "$OUT/quantization-studio_${VERSION}_${ARCH}.deb" >/dev/null
echo "built $OUT/quantization-studio_${VERSION}_${ARCH}.deb"
