"""Box labels for detectors: YOLO text files or a COCO JSON file.

Boxes are kept normalized to the source image (x1, y1, x2, y2 in 0..1), so
they map into the model input through the same placement the preprocessing
uses, whatever the resize policy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DatasetError


@dataclass(frozen=True)
class BoxLabels:
    source: str
    by_file: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)  # realpath -> (boxes [K,4] normalized xyxy, classes [K])

    def get(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        return self.by_file.get(os.path.realpath(path))


def _yolo_file(text: str, where: Path) -> tuple[np.ndarray, np.ndarray]:
    boxes, classes = [], []
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise DatasetError(f"{where} line {n} is not a YOLO label ('class cx cy w h', numbers).", "Fix or remove that line.") from None
        if len(values) < 5 or values[0] != int(values[0]) or values[0] < 0:
            raise DatasetError(f"{where} line {n}: expected 'class cx cy w h' with a class index, got {line.strip()!r}.",
                               "Fix or remove that line.")
        if len(values) == 5:
            cx, cy, w, h = values[1:]
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        else:  # a segment: class x1 y1 x2 y2 ... (its bounding box)
            pts = np.array(values[1:1 + (len(values) - 1) // 2 * 2]).reshape(-1, 2)
            box = [*pts.min(0), *pts.max(0)]
        boxes.append(box)
        classes.append(int(values[0]))
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(classes, np.int64)


def _yolo_candidates(image: Path, folder: Path | None) -> list[Path]:
    out = []
    if folder is not None:
        out.append(folder / (image.stem + ".txt"))
    out.append(image.with_suffix(".txt"))
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):  # Ultralytics layout: .../images/... -> .../labels/...
        if parts[i] == "images":
            out.append(Path(*parts[:i], "labels", *parts[i + 1:]).with_suffix(".txt"))
            break
    return out


def labels_from_yolo(files: Sequence[Path], folder: Path | None = None) -> BoxLabels:
    """YOLO labels (``class cx cy w h`` normalized, one box a line) beside each
    image, in a ``labels`` folder parallel to ``images``, or in ``folder``.
    Once any label file is found, an image without one has no objects (the
    YOLO convention for background images)."""
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    missing: list[Path] = []
    for f in files:
        txt = next((c for c in _yolo_candidates(Path(f), folder) if c.is_file()), None)
        if txt is None:
            missing.append(Path(f))
            continue
        found[os.path.realpath(f)] = _yolo_file(txt.read_text(encoding="utf-8", errors="replace"), txt)
    if not found:
        where = f"in {folder}" if folder else "beside the images or in a 'labels' folder parallel to 'images'"
        raise DatasetError(f"no YOLO label file (.txt named like the image) found {where}.",
                           "Point --labels at the folder of .txt files, or give a COCO .json.")
    empty = (np.zeros((0, 4)), np.zeros(0, np.int64))
    for f in missing:
        found[os.path.realpath(f)] = empty
    return BoxLabels(f"YOLO labels ({len(found) - len(missing)} files, {len(missing)} images without objects)", found)


def labels_from_coco(path: str | os.PathLike, files: Sequence[Path]) -> BoxLabels:
    """A COCO detection JSON. Class index = the category's position among the
    sorted category ids (how 80-class COCO models number them)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {im["id"]: im for im in data["images"]}
        cats = sorted(c["id"] for c in data.get("categories", [])) or sorted({a["category_id"] for a in data["annotations"]})
        anns = data["annotations"]
    except FileNotFoundError:
        raise DatasetError(f"labels file {path} does not exist.", "Check the path.") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path.name} is not a COCO detection file ({type(exc).__name__}: {exc}).",
                           "It needs 'images' (id, file_name, width, height) and 'annotations' (image_id, category_id, bbox).") from None
    index = {c: i for i, c in enumerate(cats)}
    per_image: dict[int, list] = {i: [] for i in images}
    for a in anns:
        if a.get("iscrowd"):
            continue
        if a.get("image_id") in per_image and a.get("category_id") in index:
            per_image[a["image_id"]].append(a)
    by_name: dict[str, int] = {}
    for im in images.values():
        by_name[str(im["file_name"]).replace("\\", "/")] = im["id"]
        by_name.setdefault(Path(str(im["file_name"])).name, im["id"])
    out = {}
    for f in files:
        f = Path(f)
        rel = next((k for k in (f.as_posix(), f.name) if k in by_name), None)
        if rel is None:
            rel = next((k for k in by_name if f.as_posix().endswith("/" + k)), None)
        if rel is None:
            continue
        im = images[by_name[rel]]
        w, h = float(im["width"]), float(im["height"])
        boxes = [[a["bbox"][0] / w, a["bbox"][1] / h, (a["bbox"][0] + a["bbox"][2]) / w, (a["bbox"][1] + a["bbox"][3]) / h]
                 for a in per_image[im["id"]]]
        classes = [index[a["category_id"]] for a in per_image[im["id"]]]
        out[os.path.realpath(f)] = (np.array(boxes, np.float64).reshape(-1, 4), np.array(classes, np.int64))
    if not out:
        raise DatasetError(f"none of the evaluation images is listed in {path.name}.",
                           "Check that its file_name entries name the images in the evaluation folder.")
    return BoxLabels(f"COCO labels {path.name} ({len(out)} images)", out)
