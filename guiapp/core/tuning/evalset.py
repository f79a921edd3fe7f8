"""The evaluation images of a search, decoded once and kept, with the FP32
model's outputs computed once: each trial then only runs its INT8 model.

Images are kept as the uint8 pixels the model sees (resized, before
normalization: a quarter of float32's memory); FP32 outputs over 256 MB go to
a memory-mapped file in the run's temporary folder. Normalizing the next
batch overlaps with ONNX Runtime running the current one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import onnxruntime as ort

from ..data.dataset import ReadLog, iter_tensors, nothing_readable
from ..data.imagefile import open_rgb
from ..data.preprocess import PreprocessSpec, model_pixels, normalize
from ..evaluate.compare import EvalPlan, Runners, compare_outputs, evaluation_order
from ..evaluate.sessions import make_session
from ..model.feeds import Feeds
from ..progress import CancelToken, ProgressFn, no_progress

IN_MEMORY_LIMIT = 256 * 2**20


def _pixels(path: Path, spec: PreprocessSpec) -> np.ndarray:
    return model_pixels(open_rgb(path), spec)


@dataclass
class EvalSet:
    paths: list[Path]
    pixels: np.ndarray  # [N, H, W, C] uint8, model channel order
    spec: PreprocessSpec
    feeds: Feeds
    names: list[str]  # the FP32 model's outputs, in order
    fp32: dict[str, np.ndarray]  # name -> [N, ...]
    declared: dict[str, tuple]
    batch: int
    skipped: list[tuple[Path, str]]

    def __len__(self) -> int:
        return len(self.paths)

    def batches(self, fixed: int | None = None) -> Iterator[tuple[list[Path], np.ndarray, slice]]:
        """(paths, normalized batch, index slice); the next batch is normalized
        on a worker thread while the caller runs the current one."""
        step = fixed or self.batch
        spans = [slice(i, min(i + step, len(self))) for i in range(0, len(self), step)]

        def make(sl: slice) -> np.ndarray:
            return normalize(np.asarray(self.pixels[sl]), self.spec)  # a stack normalizes as a batch: one copy less

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="guiapp-normalize") as pool:
            pending = pool.submit(make, spans[0]) if spans else None
            for k, sl in enumerate(spans):
                batch = pending.result()
                pending = pool.submit(make, spans[k + 1]) if k + 1 < len(spans) else None
                yield self.paths[sl], batch, sl


_LOADED: dict[str, "EvalSet"] = {}


def save_evalset(evalset: EvalSet, folder: Path) -> Path:
    """The evaluation set as files a worker process reads (memory-mapped):
    each worker decodes nothing and runs no FP32 model."""
    import pickle

    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "pixels.npy", evalset.pixels)
    for i, n in enumerate(evalset.names):
        np.save(folder / f"fp32_{i}.npy", np.asarray(evalset.fp32[n]))
    meta = {k: getattr(evalset, k) for k in ("paths", "spec", "feeds", "names", "declared", "batch", "skipped")}
    (folder / "meta.pkl").write_bytes(pickle.dumps(meta))
    return folder


def load_evalset(folder: Path) -> EvalSet:
    """What :func:`save_evalset` wrote, memory-mapped; loaded once per process."""
    import pickle

    key = str(folder)
    if key not in _LOADED:
        meta = pickle.loads((Path(folder) / "meta.pkl").read_bytes())
        fp32 = {n: np.load(Path(folder) / f"fp32_{i}.npy", mmap_mode="r") for i, n in enumerate(meta["names"])}
        _LOADED.clear()  # one search at a time
        _LOADED[key] = EvalSet(pixels=np.load(Path(folder) / "pixels.npy", mmap_mode="r"), fp32=fp32, **meta)
    return _LOADED[key]


def build_evalset(fp32_model: Path | bytes, plan: EvalPlan, tmp: Path, cancel: CancelToken) -> EvalSet:
    """Decode up to ``plan.max_images`` of its files (labeled ones first, in
    the same seeded order as a normal evaluation) and run the FP32 model on
    them once."""
    order = evaluation_order(plan.files, plan.labels, plan.seed)
    log = ReadLog()
    kept = list(iter_tensors(order, plan.spec, plan.max_images, log, cancel, loader=_pixels))
    if not kept:
        raise nothing_readable(log.skipped, "the evaluation images", "Add readable JPEG or PNG images to the evaluation folder.")
    paths = [p for p, _ in kept]
    pixels = np.stack([a for _, a in kept])
    del kept
    session = make_session(fp32_model, plan.threads)
    names = [o.name for o in session.get_outputs()]
    fp32: dict[str, np.ndarray] = {}
    probe = EvalSet(paths, pixels, plan.spec, plan.feeds, names, {}, plan.declared, plan.fixed_batch or 16, list(log.skipped))
    for _, x, sl in probe.batches(plan.fixed_batch):
        cancel.check()
        outs = session.run(names, plan.feeds(x))
        for n, a in zip(names, outs):
            a = np.asarray(a)
            if n not in fp32:
                shape = (len(paths), *a.shape[1:])
                size = int(np.prod(shape)) * a.dtype.itemsize
                fp32[n] = (np.lib.format.open_memmap(tmp / f"fp32_{len(fp32)}.npy", "w+", a.dtype, shape)
                           if size > IN_MEMORY_LIMIT else np.empty(shape, a.dtype))
            fp32[n][sl] = a
    probe.fp32 = fp32
    return probe


def score(evalset: EvalSet, int8: Path, plan: EvalPlan, cancel: CancelToken,
          progress: ProgressFn = no_progress) -> tuple[dict, ort.InferenceSession]:
    """The task's fidelity numbers of ``int8`` on the kept images, against
    the kept FP32 outputs (the same code as a full evaluation). Returns the
    comparison and the INT8 session (for timing it alone)."""
    session = make_session(int8, plan.threads)
    names = evalset.names
    current: list[slice] = []

    def batches():
        for paths, x, sl in evalset.batches(plan.fixed_batch):
            current[:] = [sl]
            yield paths, x

    def run_fp32(feed):
        return [evalset.fp32[n][current[0]] for n in names]

    runners = Runners(run_fp32, lambda feed: session.run(names, feed), names)
    result = compare_outputs(runners, plan, batches(), len(evalset), progress, cancel)
    return result, session
