"""Render resources/icons/guiapp.svg to the PNG sizes Linux desktops use
(hicolor theme) and to a Windows .ico. The outputs are committed; run this
again only when the SVG changes:

    QT_QPA_PLATFORM=offscreen python packaging/make_icons.py
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256)


def main() -> int:
    from PIL import Image
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication(sys.argv[:1])  # noqa: F841 - needed for painting
    renderer = QSvgRenderer(str(ICONS / "guiapp.svg"))
    pngs = {}
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        renderer.render(painter)
        painter.end()
        data = QByteArray()
        buf = QBuffer(data)
        buf.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buf, "PNG")
        pngs[size] = bytes(data.data())
        out = ICONS / "hicolor" / f"{size}x{size}" / "apps" / "quantization-studio.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(pngs[size])
    scalable = ICONS / "hicolor" / "scalable" / "apps" / "quantization-studio.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    scalable.write_bytes((ICONS / "guiapp.svg").read_bytes())
    big = Image.open(io.BytesIO(pngs[256]))
    big.save(ICONS / "guiapp.ico", sizes=[(s, s) for s in SIZES])
    print(f"wrote {len(SIZES)} PNG sizes, the scalable SVG and guiapp.ico under {ICONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
