"""The Python snippet written beside a .rknn: RKNN-Toolkit-Lite2 on the board,
fed exactly as the app fed the PC simulator (same decode, resize, crop or
pad, channel order; normalization is inside the model).

The snippet repeats preprocess.py's geometry in a few lines of Pillow and
numpy, so that it runs on a board with nothing of this app installed;
tests/test_target_rknn.py checks that it gives the same pixels.
"""

from __future__ import annotations

import textwrap
from datetime import date

from ... import __version__
from ..data.preprocess import PreprocessSpec
from ..tasks import TASKS

_TEMPLATE = '''#!/usr/bin/env python3
"""Run {model} on a Rockchip {platform_upper} board with RKNN-Toolkit-Lite2, fed exactly
as Quantization Studio {version} checked it on RKNN-Toolkit2's PC simulator ({day}).

    pip3 install rknn-toolkit-lite2 numpy pillow     # on the board
    python3 {script} IMAGE [IMAGE ...]

The model normalizes on the NPU (mean {mean}, std {std}, {color} channel
order): feed raw 0..255 pixels, uint8, [1, {h}, {w}, {channels}] (NHWC), decoded upright,
{resize_text}.
"""

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

MODEL = str(Path(__file__).with_name("{model}"))  # beside this script
SIZE = ({h}, {w})  # height, width
RESIZE = "{resize}"  # stretch | shorter (then centre crop) | letterbox
SHORTER = {shorter}
PAD = {pad}
FILTER = Image.Resampling.{filter}
COLOR = "{color_key}"
TASK = "{task}"  # what the model does: the outputs are printed as this task reads them
CLASS_OFFSET = {class_offset}  # model index = class index + offset


def load_image(path):
    """The model's input for one image file: uint8 [1, H, W, C]."""
    img = ImageOps.exif_transpose(Image.open(path))
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):  # transparency on black
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    img = img.convert("RGB")
    if COLOR == "gray":
        img = img.convert("L")
    th, tw = SIZE
    w, h = img.size
    if RESIZE == "stretch":
        img = img.resize((tw, th), FILTER) if (w, h) != (tw, th) else img
    elif RESIZE == "letterbox":
        scale = min(tw / w, th / h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), FILTER)
        canvas = Image.new(img.mode, (tw, th), PAD if img.mode == "L" else (PAD,) * 3)
        canvas.paste(img, ((tw - nw) // 2, (th - nh) // 2))
        img = canvas
    else:  # shorter side to SHORTER (the longer truncated), then a centre crop
        nw, nh = (SHORTER, int(SHORTER * h / w)) if w <= h else (int(SHORTER * w / h), SHORTER)
        if nw < tw or nh < th:
            grow = max(tw / nw, th / nh)
            nw, nh = max(tw, math.ceil(nw * grow)), max(th, math.ceil(nh * grow))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), FILTER)
        left, top = int(round((nw - tw) / 2.0)), int(round((nh - th) / 2.0))
        img = img.crop((left, top, left + tw, top + th))
    pixels = np.asarray(img)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    elif COLOR == "bgr":
        pixels = pixels[:, :, ::-1]
    return np.ascontiguousarray(pixels)[None]


def main(paths):
    from rknnlite.api import RKNNLite

    rknn = RKNNLite()
    if rknn.load_rknn(MODEL) != 0 or rknn.init_runtime() != 0:
        sys.exit("cannot load " + MODEL + " on this board's NPU")
    for path in paths:
        outputs = rknn.inference(inputs=[load_image(path)])
{print_outputs}
    rknn.release()


if __name__ == "__main__":
    main(sys.argv[1:] or sys.exit(__doc__))
'''

_FILTERS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS", "area": "BOX"}


def board_snippet(job, platform: str, spec: PreprocessSpec, task, model_name: str) -> str:
    """The snippet's text for ``job``'s resolved ``spec``."""
    h, w = spec.size
    resize_text = {
        "stretch": f"stretched to {w}x{h}",
        "shorter": f"shorter side to {spec.shorter_side} then a centre crop of {w}x{h}",
        "letterbox": f"letterboxed into {w}x{h} (padding {spec.pad_value})",
    }[spec.resize]
    fmt = lambda values: "(" + ", ".join(f"{v:g}" for v in values) + ")"  # noqa: E731
    return _TEMPLATE.format(
        model=model_name, platform_upper=platform.upper(), version=__version__, day=date.today().isoformat(),
        script=model_name.removesuffix(".rknn") + "_board.py", mean=fmt(spec.mean), std=fmt(spec.std),
        color=spec.color.upper(), h=h, w=w, channels=spec.channels, resize_text=resize_text, resize=spec.resize,
        shorter=spec.shorter_side, pad=spec.pad_value, filter=_FILTERS[spec.interpolation], color_key=spec.color,
        task=task.kind, class_offset=job.evaluation.class_offset,
        print_outputs=textwrap.indent(TASKS[task.kind].board_print.strip("\n"), " " * 8),
    )
