"""Image folders: listing, seeded sampling, labels, and reading tensors.

Listing is recursive and deterministic (sorted by folder, then relative path),
follows symlinked folders once (a symlink loop ends the walk, not the program)
and never decodes anything. Decoding happens while reading, where unreadable
files are skipped and recorded.
"""

from __future__ import annotations

import csv
import ctypes
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import DatasetError, ImageReadError
from .imagefile import IMAGE_EXTENSIONS
from .preprocess import PreprocessSpec, load_tensor
from ..progress import CancelToken


def list_images(folders: Sequence[str | os.PathLike], what: str = "calibration") -> list[Path]:
    """All image files under ``folders``, deterministic, without duplicates."""
    if not folders:
        raise DatasetError(f"no {what} folder given.", f"Add at least one folder of {what} images.")
    seen_files: set[str] = set()
    out: list[Path] = []
    for folder in folders:
        root = Path(folder)
        if not root.exists():
            raise DatasetError(f"the {what} folder {root} does not exist.", "Check the path.")
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder.", f"Give a folder that holds {what} images.")
        if not os.access(root, os.R_OK | os.X_OK):
            raise DatasetError(f"cannot read the {what} folder {root}: permission denied.", "Check its permissions.")
        found = _walk(root)
        if not found:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise DatasetError(f"the {what} folder {root} holds no image files.", f"Add images ({exts}).")
        for key, p in found:
            if key not in seen_files:
                seen_files.add(key)
                out.append(p)
    return out


def _walk(root: Path) -> list[tuple[str, Path]]:
    """(real path, path) of every image under ``root``, sorted by relative path.
    Real paths (for de-duplication) are resolved once per folder, not per file."""
    files: list[tuple[str, str, Path]] = []
    visited: set[tuple[int, int]] = set()
    prefix = len(str(root)) + 1
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in visited:  # symlink loop or second link to the same folder
            continue
        visited.add((st.st_dev, st.st_ino))
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue  # unreadable folder: nothing to list in it
        real_dir = os.path.realpath(d)
        for e in entries:
            try:
                if e.is_dir():
                    stack.append(Path(e.path))
                elif e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                    real = os.path.realpath(e.path) if e.is_symlink() else os.path.join(real_dir, e.name)
                    files.append((e.path[prefix:].replace(os.sep, "/"), real, Path(e.path)))
            except OSError:
                continue
    files.sort(key=lambda t: t[0])
    return [(real, p) for _, real, p in files]


def seeded_order(files: Sequence[Path], seed: int) -> list[Path]:
    """A permutation of ``files`` that depends only on the list and the seed."""
    order = list(files)
    random.Random(seed).shuffle(order)
    return order


# ---------------------------------------------------------------- labels


@dataclass(frozen=True)
class Labels:
    """Class index of labeled images: looked up by path relative to one of
    ``roots``, then by bare file name (when that name is unambiguous)."""

    by_relpath: dict[str, int]
    by_name: dict[str, int]
    roots: tuple[Path, ...]
    class_names: tuple[str, ...] = ()
    source: str = ""

    def get(self, path: Path) -> int | None:
        real = Path(os.path.realpath(path))
        for r in self.roots:
            if r in real.parents:
                hit = self.by_relpath.get(real.relative_to(r).as_posix())
                if hit is not None:
                    return hit
        return self.by_name.get(real.name)


def _make_labels(pairs: list[tuple[str, str]], roots: Sequence[Path], source: str) -> Labels:
    """(relative path, class) pairs -> Labels. Classes that are all integers
    are indices; otherwise they are numbered in sorted name order
    (torchvision's ImageFolder)."""
    names = sorted({c for _, c in pairs})
    if all(_is_int(n) for n in names):
        index = {n: int(n) for n in names}
        class_names: tuple[str, ...] = ()
    else:
        index = {n: i for i, n in enumerate(names)}
        class_names = tuple(names)
    by_rel: dict[str, int] = {}
    by_name: dict[str, int] = {}
    ambiguous: set[str] = set()
    for rel, c in pairs:
        by_rel[rel] = index[c]
        base = Path(rel).name
        if base in by_name and by_name[base] != index[c]:
            ambiguous.add(base)
        by_name[base] = index[c]
    for base in ambiguous:
        del by_name[base]
    real_roots = tuple(Path(os.path.realpath(r)) for r in roots)
    return Labels(by_rel, by_name, real_roots, class_names, source)


def labels_from_subfolders(files: Sequence[Path], roots: Sequence[Path]) -> Labels:
    """Labels from class-named sub-folders (``root/<class>/img.jpg``)."""
    pairs = []
    real_roots = [Path(os.path.realpath(r)) for r in roots]
    for f in files:
        real = Path(os.path.realpath(f))
        for r in real_roots:
            if r in real.parents:
                rel = real.relative_to(r)
                if len(rel.parts) >= 2:
                    pairs.append((rel.as_posix(), rel.parts[0]))
                break
    if not pairs:
        raise DatasetError(
            "the evaluation images are not in class-named sub-folders.",
            "Put each class in its own sub-folder, or give a labels CSV.",
        )
    return _make_labels(pairs, roots, "sub-folders")


def labels_from_csv(csv_path: str | os.PathLike, roots: Sequence[Path]) -> Labels:
    """Labels from a CSV with a ``file`` column and a ``class_index`` or ``label`` column.

    ``file`` is matched against paths relative to each root, then against bare
    file names. ``label`` may hold class indices or class names.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"the labels file {csv_path} does not exist.", "Check the path.")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            cols = [(c or "").strip() for c in (reader.fieldnames or [])]
            rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items() if isinstance(v, str)} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read the labels file {csv_path}: {exc}.", "Give a UTF-8 CSV file.") from None
    if "file" not in cols or not ({"class_index", "label"} & set(cols)):
        raise DatasetError(
            f"{csv_path.name} has columns {cols}; a labels CSV needs a 'file' column and a 'class_index' or 'label' column.",
            "Rename the columns.",
        )
    col = "class_index" if "class_index" in cols else "label"
    pairs = [
        (Path(r["file"]).as_posix().removeprefix("./"), r[col]) for r in rows if r.get("file") and r.get(col)
    ]
    if not pairs:
        raise DatasetError(f"{csv_path.name} has no labeled rows.", f"Fill the 'file' and '{col}' columns.")
    return _make_labels(pairs, roots, f"csv:{csv_path.name}")


def _is_int(v: str) -> bool:
    try:
        int(v)
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------- reading


@dataclass
class ReadLog:
    """What a read pass used and skipped; goes into the report."""

    used: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def nothing_readable(skipped: Sequence[tuple[Path, str]], where: str, fix: str) -> DatasetError:
    """The error for a read pass that found no readable image in ``where``."""
    first = skipped[0] if skipped else None
    return DatasetError(
        f"no readable image in {where}: {len(skipped)} file(s) failed to decode"
        + (f" (first: {first[0].name}: {first[1]})" if first else "") + ".",
        fix,
    )


_M_MMAP_THRESHOLD = -3
_heap_settled = False


def keep_big_buffers_off_the_heap() -> None:
    """Fix glibc's mmap threshold at 4 MB (once per process).

    Decoded photos of varying sizes are freed one after another, and glibc
    raises its mmap threshold after each such free: later big buffers then
    land on the heap, which does not shrink, so peak RSS crept up with the
    number of images. Measured on squeezenet1.1 with the ImageNet photos,
    extremes only: 100 images 450 MB, 500 images 537 MB; with the threshold
    fixed, 455 and 477 MB. Synthetic tensors (no decoding) stay flat either way.
    """
    global _heap_settled
    if _heap_settled or not sys.platform.startswith("linux"):
        return
    _heap_settled = True
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 4 << 20)
    except (OSError, AttributeError):
        pass  # not glibc


def iter_tensors(
    files: Iterable[Path],
    spec: PreprocessSpec,
    limit: int,
    log: ReadLog,
    cancel: CancelToken | None = None,
    on_image: Callable[[int], None] | None = None,
    loader: Callable[[Path, PreprocessSpec], np.ndarray] = load_tensor,
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield (path, tensor) for up to ``limit`` readable files, in order.

    Decoding runs one image ahead on a worker thread (Pillow releases the GIL),
    so it overlaps with inference. Unreadable files are skipped into ``log``.
    """

    keep_big_buffers_off_the_heap()

    def load(p: Path):
        try:
            return p, loader(p, spec), None
        except ImageReadError as exc:
            return p, None, exc.reason

    files = iter(files)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="guiapp-decode") as pool:
        pending = [pool.submit(load, p) for p in _take(files, 2)]
        while pending and len(log.used) < limit:
            if cancel is not None:
                cancel.check()
            p, tensor, reason = pending.pop(0).result()
            nxt = next(files, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
            if tensor is None:
                log.skipped.append((p, reason))
                continue
            log.used.append(p)
            if on_image is not None:
                on_image(len(log.used))
            yield p, tensor
        for f in pending:
            f.cancel()


def _take(it: Iterator[Path], n: int) -> list[Path]:
    out = []
    for _ in range(n):
        p = next(it, None)
        if p is None:
            break
        out.append(p)
    return out


def batches(
    stream: Iterator[tuple[Path, np.ndarray]], batch_size: int
) -> Iterator[tuple[list[Path], np.ndarray]]:
    """Group a tensor stream into stacked batches."""
    paths: list[Path] = []
    tensors: list[np.ndarray] = []
    for p, t in stream:
        paths.append(p)
        tensors.append(t)
        if len(tensors) == batch_size:
            yield paths, np.stack(tensors)
            paths, tensors = [], []
    if tensors:
        yield paths, np.stack(tensors)


@dataclass(frozen=True)
class FolderScan:
    folder: Path
    images: int  # image files found
    unreadable: tuple[tuple[Path, str], ...]  # of those checked
    checked: int


def scan_folders(
    folders: Sequence[Path], progress: Callable, cancel: CancelToken, check_limit: int = 2000
) -> list[FolderScan]:
    """Image counts per folder, and which files fail to decode (the first
    ``check_limit`` per folder are decoded; the rest are only counted)."""
    from .imagefile import check_readable
    from ..progress import ProgressEvent

    out = []
    for folder in folders:
        try:
            files = list_images([folder])
        except DatasetError:
            out.append(FolderScan(Path(folder), 0, (), 0))
            continue
        to_check = files[:check_limit]
        bad = []
        for i, f in enumerate(to_check):
            cancel.check()
            reason = check_readable(f)
            if reason:
                bad.append((f, reason))
            if i % 20 == 0 or i + 1 == len(to_check):
                progress(ProgressEvent("scan", i + 1, len(to_check), f"checking {Path(folder).name}"))
        out.append(FolderScan(Path(folder), len(files), tuple(bad), len(to_check)))
    return out
