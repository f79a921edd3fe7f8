"""The calibration cache: collected statistics saved beside the job, so that
re-quantizing with another strategy, format or exclusion list does not run the
images again.

A cache is used only when its fingerprint matches: the model's bytes, the
preprocessing, the calibration images (names, sizes, times), the sample size,
seed and batch size (the moving average is per batch), and the versions of the cache format and of ONNX Runtime (which
names the pre-processed graph's tensors).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from .histogram import HALF, TensorStats

FORMAT = 3  # bump whenever the statistics change meaning or layout



def default_path(output: Path, job_file: Path | None = None) -> Path:
    """Where the statistics live by default: beside the job file, or else
    beside the output (``model.int8.onnx`` -> ``model.int8.calib.npz``)."""
    if job_file is not None:
        return job_file.with_name(job_file.stem + ".calib.npz")
    return output.with_name(output.name.removesuffix(".onnx") + ".calib.npz")


@dataclass(frozen=True)
class CacheEntry:
    stats: dict[str, TensorStats]
    images: int
    seconds: float
    used: tuple[str, ...]  # calibration files, as paths
    skipped: tuple[tuple[str, str], ...]
    histograms: bool = True  # False: extremes only (a MinMax run)


def fingerprint(model: Path, preprocess: dict, files: list[Path], max_images: int, seed: int, batch_size: int, ema: float) -> str:
    import onnxruntime

    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "half": HALF, "ort": onnxruntime.__version__, "pp": preprocess,
                         "n": max_images, "seed": seed, "batch": batch_size, "ema": ema}, sort_keys=True).encode())
    _hash_file(h, model)
    for f in files:
        try:
            st = f.stat()
            h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\0missing\n".encode())
    return h.hexdigest()


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)


def save(path: Path, key: str, entry: CacheEntry) -> None:
    names = list(entry.stats)
    st = [entry.stats[n] for n in names]
    meta = {
        "format": FORMAT,
        "key": key,
        "images": entry.images,
        "seconds": entry.seconds,
        "names": names,
        "used": list(entry.used),
        "skipped": [list(s) for s in entry.skipped],
        "exp": [s.exp for s in st],
        "zeros_pending": [s.zeros_pending for s in st],
        "count": [s.count for s in st],
        "zeros": [s.zeros for s in st],
        "histograms": entry.histograms,
    }
    arrays = {
        "lohi": np.array([[s.lo, s.hi, s.ema_lo, s.ema_hi] for s in st], dtype=np.float64).reshape(-1, 4),
        "hist": np.stack([s.hist for s in st]) if st else np.zeros((0, 2 * HALF), np.int64),
    }

    def write(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr("meta.json", json.dumps(meta))
            z.writestr("arrays.npz", buf.getvalue())

    atomic_write(path, write)


def load_unchecked(path: Path) -> CacheEntry | None:
    """The statistics of a cache this run just wrote or used, whatever its fingerprint."""
    try:
        with zipfile.ZipFile(path) as z:
            key = json.loads(z.read("meta.json")).get("key")
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return load(path, key)


def load(path: Path, key: str) -> CacheEntry | None:
    """The cached statistics, or None when absent, stale or unreadable."""
    try:
        with zipfile.ZipFile(path) as z:
            meta = json.loads(z.read("meta.json"))
            if meta.get("format") != FORMAT or meta.get("key") != key:
                return None
            arrays = np.load(io.BytesIO(z.read("arrays.npz")))
            lohi, hist = arrays["lohi"], arrays["hist"]
            stats = {}
            for i, name in enumerate(meta["names"]):
                lo, hi, elo, ehi = (float(v) for v in lohi[i])
                stats[name] = TensorStats(
                    lo=lo, hi=hi, ema_lo=elo, ema_hi=ehi, exp=meta["exp"][i], zeros_pending=meta["zeros_pending"][i],
                    count=meta["count"][i], zeros=meta["zeros"][i], hist=hist[i].astype(np.int64),
                )
            return CacheEntry(
                stats, meta["images"], meta["seconds"], tuple(meta["used"]), tuple(tuple(s) for s in meta["skipped"]),
                bool(meta["histograms"]),
            )
    except (OSError, KeyError, IndexError, TypeError, ValueError, zipfile.BadZipFile, json.JSONDecodeError):
        return None  # unreadable or from another version: calibrate again
