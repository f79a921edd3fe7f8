"""Our own streaming calibration: run the FP32 model batch by batch with the
tensors to calibrate exposed as outputs, fold each batch into fixed-size
per-tensor statistics, and drop it. Memory does not grow with the number of
images (ONNX Runtime's histogram calibrators keep every activation; NOTES.md).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import onnx
import onnxruntime as ort

from ..data.dataset import ReadLog, iter_tensors, seeded_order
from ..data.dataset import batches as make_batches
from ..data.preprocess import PreprocessSpec
from ..errors import ModelError
from ..model.feeds import Feeds
from ..model.graphprep import with_outputs
from ..progress import CALIBRATE, CancelToken, ProgressEvent, ProgressFn
from .histogram import EXTREMES_DERIVABLE, SHARED, TWIN_DERIVABLE, TensorStats, TwinStats, derived_extremes, derived_hist
from ..model.quantizable import QUANTIZABLE_OP_TYPES
from ..evaluate.sessions import make_session
from .strategies import HISTOGRAM_METHODS

_FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
RELU_BOUNDS = (0.0, math.inf)
FOLD_WORKERS = 2  # numpy folds two tensors at once (it releases the GIL); ONNX Runtime runs beside them


def tensors_to_calibrate(model: onnx.ModelProto, op_types=QUANTIZABLE_OP_TYPES) -> list[str]:
    """The float activations ONNX Runtime's quantizer asks ranges for: inputs and
    outputs of quantizable nodes whose type shape inference knows (the same
    rule as ORT's ``select_tensors_to_calibrate``), in graph order."""
    g = model.graph
    typed = {vi.name: vi for vi in itertools.chain(g.value_info, g.output, g.input)}
    inits = {t.name for t in g.initializer}
    out: dict[str, None] = {}
    for node in g.node:
        if node.op_type not in op_types:
            continue
        for name in itertools.chain(node.input, node.output):
            vi = typed.get(name)
            if vi is None or name in inits or name in out:
                continue
            if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type in _FLOAT_TYPES:
                out[name] = None
    return list(out)


def augmented(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` whose outputs are ``names`` (graph inputs excluded:
    those are read from the feed)."""
    g = model.graph
    graph_inputs = {i.name for i in g.input}
    typed = {vi.name: vi for vi in itertools.chain(g.value_info, g.output)}
    return with_outputs(model, [typed[n] for n in names if n not in graph_inputs])


@dataclass(frozen=True)
class Derivation:
    op: str
    inputs: list[str]
    bounds: tuple[float, float] | None = None  # Clip's constant min and max


def derivation_plan(model: onnx.ModelProto, names: list[str], histograms: bool, share: bool = False) -> dict[str, Derivation]:
    """Calibrated tensors whose statistics follow exactly from other calibrated
    tensors, in graph order. The collector never reads these, which about
    halves what it reads in a typical CNN (and lets ONNX Runtime keep more
    buffers to itself). With histograms, a Relu or Clip output derives from a
    tensor the collector reads itself (a graph input is fed, not read), one
    per such tensor, and only when its bounds enclose 0 (TwinStats). See
    histogram.py for which derivations are exact.

    With ``share``, a Relu or Clip input that nothing else reads (and that is
    no graph output) takes its output's statistics instead (``SHARED``), and
    the output is read. ONNX Runtime's quantizer gives such a tensor its
    activation's range anyway when the activation is quantized
    (``adjust_tensor_ranges``), so the INT8 graph is the one the tensor's own
    statistics give; when the activation stays in float, quantizing its input
    on the output's range loses nothing the activation keeps. Reading the
    activation's output lets ONNX Runtime keep it fused with its convolution
    and in its blocked layout; reading the convolution's output undoes both
    (bench/calibration_exposure.py)."""
    wanted = set(names)
    consts = {t.name: t for t in model.graph.initializer}
    graph_inputs = {i.name for i in model.graph.input}
    graph_outputs = {o.name for o in model.graph.output}
    readers = _readers(model.graph)
    twinned: set[str] = set()
    plan: dict[str, Derivation] = {}
    for node in model.graph.node:
        if node.op_type not in EXTREMES_DERIVABLE or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
            continue
        out = node.output[0]
        inputs = list(node.input) if node.op_type == "Concat" else [node.input[0]]
        if out not in wanted or not inputs or not all(i in wanted for i in inputs):
            continue
        if share and node.op_type in TWIN_DERIVABLE:
            src = inputs[0]
            if readers[src] == 1 and src not in plan and src not in graph_inputs and src not in graph_outputs:
                plan[src] = Derivation(SHARED, [out])
                continue
        bounds = None
        if node.op_type == "Clip":
            bounds = _clip_bounds(node, consts)
            if bounds is None:
                continue
        if histograms and node.op_type in TWIN_DERIVABLE:
            src, (low, high) = inputs[0], bounds or RELU_BOUNDS
            if src in plan or src in graph_inputs or src in twinned or not low <= 0.0 <= high:
                continue
            twinned.add(src)
        plan[out] = Derivation(node.op_type, inputs, bounds)
    return plan


def _readers(graph: onnx.GraphProto) -> Counter:
    """How many node inputs name each tensor, counting nodes of subgraphs (an
    If or Loop body reading an outer tensor by name)."""
    out: Counter = Counter()
    for node in graph.node:
        out.update(i for i in node.input if i)
        for a in node.attribute:
            for sub in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                out.update(_readers(sub))
    return out


def _clip_bounds(node: onnx.NodeProto, consts: dict) -> tuple[float, float] | None:
    """Clip's min and max when constant (inputs since opset 11, attributes before)."""
    lo, hi = -np.inf, np.inf
    for a in node.attribute:
        if a.name == "min":
            lo = a.f
        elif a.name == "max":
            hi = a.f
    for i, name in ((1, "min"), (2, "max")):
        if len(node.input) > i and node.input[i]:
            if node.input[i] not in consts:
                return None
            value = float(onnx.numpy_helper.to_array(consts[node.input[i]]))
            lo, hi = (value, hi) if name == "min" else (lo, value)
    return float(lo), float(hi)


@dataclass(frozen=True)
class Collected:
    """What one pass over the calibration images gathered."""

    stats: dict[str, TensorStats]
    images: int
    seconds: float
    histograms: bool


@dataclass(frozen=True)
class Folding:
    """How a pass folds activations: the EMA constant of the extremes,
    whether histograms are kept (MinMax needs extremes only), ONNX Runtime's
    threads, and whether a Relu or Clip input shares its output's statistics
    (see :func:`derivation_plan`)."""

    ema_constant: float = 0.01
    histograms: bool = True
    threads: int | None = None
    share_activation_ranges: bool = False


def collect(model: onnx.ModelProto, feeds: Feeds, batches: Iterator[tuple[list[Path], np.ndarray]], total_images: int,
            progress: ProgressFn, cancel: CancelToken, folding: Folding = Folding()) -> Collected:
    """Run ``batches`` through ``model`` and fold every calibrated tensor into
    fixed-size statistics; each batch's activations are dropped once folded.
    Without ``histograms`` only extremes are kept (all MinMax needs).

    Workers fold batch i while ONNX Runtime runs batch i+1 (numpy and ONNX
    Runtime both release the GIL): at most two batches of activations are alive."""
    t0 = time.perf_counter()
    names = tensors_to_calibrate(model)
    plan = derivation_plan(model, names, folding.histograms, folding.share_activation_ranges)
    fed = {feeds.image} | {c.name for c in feeds.constants}
    exposed = [n for n in names if n not in plan and n not in fed]
    session = _session(augmented(model, exposed).SerializeToString(), folding.threads)
    folder = BatchFolder({n: TensorStats() for n in names}, plan, folding)
    images = 0
    progress(ProgressEvent(CALIBRATE, 0, total_images, "running the FP32 model on calibration images"))

    def folded(batch_done: Callable[[], int]) -> int:
        done = images + batch_done()
        progress(ProgressEvent(CALIBRATE, done, total_images, f"{done}/{total_images} images"))
        return done

    with ThreadPoolExecutor(max_workers=FOLD_WORKERS, thread_name_prefix="guiapp-fold") as pool:
        pending: Callable[[], int] | None = None
        for paths, batch in batches:
            cancel.check()
            feed = feeds(batch)
            try:
                # OrtValues: their .numpy() views ONNX Runtime's buffers, no copy.
                values = session.run_with_ort_values(exposed, {k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in feed.items()})
            except Exception as exc:  # noqa: BLE001 - ORT's own exception types
                raise ModelError(
                    f"the model failed on calibration image {paths[0].name}: {str(exc).splitlines()[0][:200]}",
                    "Check the input size and preprocessing settings.",
                ) from None
            if pending is not None:
                images = folded(pending)
            pending = folder.submit(pool, feed, dict(zip(exposed, values)), len(paths))
            del values
        if pending is not None:
            images = folded(pending)
    folder.finish()
    return Collected(folder.stats, images, time.perf_counter() - t0, folding.histograms)


def _session(model: bytes, threads: int | None) -> ort.InferenceSession:
    """make_session's session, but ONNX Runtime's threads sleep when idle
    instead of spinning: the fold worker needs the core they would spin on
    (measured on 2 cores, spinning made calibration up to twice as slow)."""
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the same model loads in make_session, which words the error
        return make_session(model, threads)


class BatchFolder:
    """Folds one batch's tensors into their statistics: the fed and read ones
    directly (a tensor behind a derived Relu or Clip through a TwinStats), the
    derived ones' extremes from their inputs' (histograms at :meth:`finish`)."""

    def __init__(self, stats: dict[str, TensorStats], plan: dict[str, Derivation], folding: Folding):
        self.stats, self.plan, self.folding = stats, plan, folding
        twins = {d.inputs[0]: TwinStats(stats[d.inputs[0]], d.bounds or RELU_BOUNDS)
                 for d in plan.values() if folding.histograms and d.op in TWIN_DERIVABLE}
        self.folders: dict[str, TensorStats | TwinStats] = {**stats, **twins}
        self.twins = {out: twins[d.inputs[0]] for out, d in plan.items() if d.inputs[0] in twins and d.op in TWIN_DERIVABLE}
        self.parts: list[list[str]] | None = None  # which worker folds which tensor, fixed at the first batch

    def submit(self, pool: ThreadPoolExecutor, feed: dict[str, np.ndarray], outputs: dict[str, ort.OrtValue],
               images: int) -> Callable[[], int]:
        """Start folding one batch, its tensors split between the pool's
        workers; the function returned waits for them, folds the derived
        tensors' extremes and returns the batch's number of images."""
        values = {**{k: v for k, v in feed.items() if k in self.stats}, **outputs}
        if self.parts is None:
            self.parts = self._split(values)
        jobs = [pool.submit(self._fold, {n: values.pop(n) for n in part if n in values}) for part in self.parts]

        def done() -> int:
            extremes: dict[str, tuple[float, float]] = {}
            for job in jobs:
                extremes.update(job.result())
            for name, d in self.plan.items():
                if all(i in extremes for i in d.inputs):
                    extremes[name] = derived_extremes(d.op, [extremes[i] for i in d.inputs], d.bounds)
                    self.stats[name].fold_extremes(*extremes[name], self.folding.ema_constant)
            return images

        return done

    def _fold(self, values: dict[str, np.ndarray | ort.OrtValue]) -> dict[str, tuple[float, float]]:
        extremes = {}
        for name in list(values):
            value = values.pop(name)  # each tensor's buffer goes back to ONNX Runtime once folded
            array = value.numpy() if isinstance(value, ort.OrtValue) else value
            del value
            if array.dtype.kind == "f":
                extremes[name] = self.folders[name].fold(array, self.folding.ema_constant, self.folding.histograms)
            del array
        return extremes

    def _split(self, values: dict[str, np.ndarray | ort.OrtValue]) -> list[list[str]]:
        """The tensors shared out between the workers by cost (elements, a
        twin's counting 1.4 times), largest first to the least loaded."""
        cost = {n: math.prod(v.shape() if isinstance(v, ort.OrtValue) else v.shape)
                * (1.4 if isinstance(self.folders[n], TwinStats) else 1.0) for n, v in values.items()}
        parts: list[list[str]] = [[] for _ in range(FOLD_WORKERS)]
        loads = [0.0] * FOLD_WORKERS
        for n in sorted(cost, key=cost.__getitem__, reverse=True):
            i = loads.index(min(loads))
            parts[i].append(n)
            loads[i] += cost[n]
        return parts

    def finish(self) -> None:
        """The derived histograms, once every batch is folded: the twins' first
        (other derivations may read their inputs), then the rest in graph order."""
        if not self.folding.histograms:
            return
        for out, twin in self.twins.items():
            twin.finish(self.stats[out])
        for name, d in self.plan.items():
            if name not in self.twins:
                derived_hist(d.op, [self.stats[i] for i in d.inputs], self.stats[name])


@dataclass(frozen=True)
class Calibration:
    """The calibration stage's result, from images or from the cache."""

    stats: dict[str, TensorStats]
    images: int
    seconds: float
    used: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]
    cache_used: bool
    histograms: bool = True
    key: str = ""  # the cache fingerprint

    def save_cache(self, path: Path) -> None:
        """Store the statistics for later runs (the pipeline does it once the
        whole job succeeded, with the output: a cancelled run writes nothing)."""
        from . import calibcache

        if self.cache_used or not self.images:
            return
        assert self.key, "calibrate() was given no cache path, so no fingerprint"
        calibcache.save(path, self.key, calibcache.CacheEntry(
            self.stats, self.images, self.seconds, tuple(str(p) for p in self.used),
            tuple((str(p), r) for p, r in self.skipped), self.histograms,
        ))


@dataclass(frozen=True)
class CalibrationInputs:
    """What a calibration pass reads: the images, how they become tensors,
    how many, and where its statistics are cached. ``settings`` is the job's
    calibration settings (method, max_images, seed, ema_constant).
    ``share_activation_ranges``: a Relu or Clip input read by nothing else
    gets its output's statistics, as ONNX Runtime's quantizer gives it its
    output's range (faster: see :func:`derivation_plan`); off where every
    tensor's own range is written out (TensorRT's calibration cache)."""

    model_path: Path  # the FP32 file (its hash keys the cache)
    feeds: Feeds
    spec: PreprocessSpec
    settings: Any
    files: list[Path]
    batch_size: int
    cache_path: Path | None = None
    threads: int | None = None
    share_activation_ranges: bool = False


def calibrate(prepared: onnx.ModelProto, inputs: CalibrationInputs, progress: ProgressFn, cancel: CancelToken,
              variant: dict | None = None) -> Calibration:
    """Statistics of every calibrated tensor of ``prepared`` over
    ``settings.max_images`` readable images of the files (seeded order), or
    from a matching cache. Histograms are collected when the method needs
    them; a cache without them does not serve such a method. ``variant``
    tells apart statistics of a transformed graph (an equalized one) in the
    cache."""
    from . import calibcache

    settings, spec, feeds, cache_path = inputs.settings, inputs.spec, inputs.feeds, inputs.cache_path
    histograms = settings.method in HISTOGRAM_METHODS
    key = "" if cache_path is None else calibcache.fingerprint(  # it hashes the model file: only when cached
        inputs.model_path, {"preprocess": spec.to_dict(), "inputs": {c.name: c.value.tolist() for c in feeds.constants},
                            **({"variant": variant} if variant else {}),
                            **({"shared_activation_ranges": True} if inputs.share_activation_ranges else {})},
        inputs.files, settings.max_images, settings.seed, inputs.batch_size, settings.ema_constant,
    )
    if cache_path is not None and cache_path.is_file():
        entry = calibcache.load(cache_path, key)
        if entry is not None and (entry.histograms or not histograms):
            progress(ProgressEvent(CALIBRATE, 1, 1, f"statistics of {entry.images} images from the cache"))
            return Calibration(
                entry.stats, entry.images, entry.seconds, tuple(Path(p) for p in entry.used),
                tuple((Path(p), r) for p, r in entry.skipped), True, entry.histograms, key,
            )
    log = ReadLog()
    total = min(settings.max_images, len(inputs.files))
    stream = iter_tensors(seeded_order(inputs.files, settings.seed), spec, settings.max_images, log, cancel)
    collected = collect(prepared, feeds, make_batches(stream, inputs.batch_size), total, progress, cancel,
                        Folding(settings.ema_constant, histograms, inputs.threads, inputs.share_activation_ranges))
    return Calibration(
        collected.stats, collected.images, collected.seconds, tuple(log.used), tuple(log.skipped), False, histograms, key
    )
