"""A whole quantization job: prepare, calibrate, quantize, evaluate, write.

Nothing is written until everything succeeded: the model is built and
evaluated in a temporary folder, then moved into place atomically, then the
calibration cache and the report are written. A failure or a cancel at any
stage leaves no file behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from .atomic import atomic_path, check_output_path
from .calibrate.calibration import Calibration, calibrate
from .calibrate.strategies import StrategySettings, Target, compute_ranges
from .data.dataset import ReadLog, batches, iter_tensors, list_images, nothing_readable, seeded_order
from .data.normcheck import quiet_check
from .data.preprocess import PreprocessSpec
from .errors import DatasetError, JobError, ModelError, OutputError
from .evaluate.compare import evaluate_models, resolve_labels
from .evaluate.perlayer import per_layer_error
from .evaluate.sessions import default_threads
from .job import Job, QuantSettings
from .model.feeds import make_feeds
from .model.graphprep import constants_to_initializers, flatten_gemm_biases, name_nodes, pre_process, upgrade_opset
from .model.loading import load_proto
from .model.modelinfo import ModelInfo, inspect_model
from .progress import PREPARE, QUANTIZE, TUNE, CancelToken, ProgressEvent, ProgressFn, no_progress
from .quantize.ortquant import quantize_with_ranges, settings_warnings
from .quantize.outputform import apply_output_form, check_batch_one, concat_note, shared_ranges
from .quantize.protect import find_protections
from .report.summary import broken_warning, environment, now_iso, write_report
from .tasks import detect_task
from .tuning.equalize import equalized
from .tuning.sensitivity import rank
from .tuning.trials import TrialSettings
from .tuning.workspace import BIAS_IMAGES, Variant, Workspace


@dataclass(frozen=True)
class QuantResult:
    output: Path
    report: dict
    samples: list = field(default_factory=list)  # the task's picture data (boxes, maps) for the first images
    eval_files: tuple[Path, ...] = ()  # the images evaluation drew from (a target re-checks on them)


@dataclass(frozen=True)
class Prepared:
    """The FP32 graph, ready for the quantizer, in the work folder."""

    path: Path
    model: onnx.ModelProto
    steps: tuple[str, ...]
    header: onnx.ModelProto  # the input's metadata, producer and doc strings (no graph)


def resolve_spec(spec: PreprocessSpec, info: ModelInfo) -> PreprocessSpec:
    """A job's preprocessing made concrete for this model, or a JobError."""
    ii = info.image_input
    assert ii is not None
    spec = spec.resolved(ii.layout, ii.size)
    if spec.channels != ii.channels:
        want = "gray" if ii.channels == 1 else "rgb or bgr"
        raise JobError(
            "preprocess.color",
            f"{spec.color.upper()} gives {spec.channels} channel(s) but the model's input {ii.name!r} takes {ii.channels}",
            f"Use {want} with {ii.channels} mean/std value(s).",
        )
    return spec


def check_model(info: ModelInfo) -> None:
    if info.blockers:
        raise ModelError(info.blockers[0])


def prepare(job: Job, info: ModelInfo, tmp: Path, progress: ProgressFn, cancel: CancelToken) -> Prepared:
    """Load, fix what real exporters get wrong, and run quant_pre_process.
    (Models over 2 GB were refused by inspection: everything fits in memory.)"""
    model = load_proto(job.model, load_external=True)
    header = _header(model)
    steps = []
    moved = constants_to_initializers(model)
    if moved:
        steps.append(f"moved {moved} Constant node(s) into initializers so their weights can be quantized")
    model, note = upgrade_opset(model, info.opset)
    if note:
        steps.append(note)
    source = tmp / "source.onnx"
    onnx.save(model, str(source))
    del model
    progress(ProgressEvent(PREPARE, 1, 3, "pre-processing (shape inference, optimization)"))
    cancel.check()
    path = tmp / "prepared.onnx"
    steps.append("quant_pre_process: " + pre_process(source, path))
    prepared = onnx.load(str(path))
    flattened = flatten_gemm_biases(prepared)
    if flattened:
        steps.append(f"reshaped {flattened} Gemm bias(es) from [1, N] to [N]")
    named = name_nodes(prepared)
    if named:
        steps.append(f"named {named} unnamed node(s) (Op_index) so that they can be kept in float and reported")
    if flattened or named:
        onnx.save(prepared, str(path))
    progress(ProgressEvent(PREPARE, 3, 3, "ready"))
    return Prepared(path, prepared, tuple(steps), header)


def build(prepared: Prepared, ranges: dict, settings: QuantSettings, out: Path) -> None:
    """ONNX Runtime writes the INT8 graph from our ranges (Concat inputs tied
    to their Concat's range when the settings say so)."""
    ranges = shared_ranges(prepared.model, ranges, settings)
    try:
        quantize_with_ranges(prepared.path, out, ranges, settings, out.parent)
    except Exception as exc:  # noqa: BLE001 - ORT's quantizer raises anything
        text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"ONNX Runtime's quantizer failed: {text}",
            "Try keeping the failing node in float (exclude it), or the per-tensor or QOperator options.",
        ) from None


def quantize(
    job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None, overwrite: bool = False
) -> QuantResult:
    """Run ``job`` end to end. Raises UserError subclasses or Cancelled.

    An existing output is replaced only with ``overwrite``."""
    from .targets.registry import TARGETS  # the targets' flows import this module

    run = TARGETS[job.target.kind].run
    if run is not None:  # another runtime's flow (targets/), built from the stages here
        return run(job, progress, cancel, overwrite)
    cancel = cancel or CancelToken()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    progress(ProgressEvent(PREPARE, 0, 3, "checking the model and settings"))
    if job.output is None:
        raise JobError("output", "no output path given", "Choose where to write the INT8 model.")
    check_output_path(job.model, job.output, overwrite)
    for extra in (job.report, job.cache):
        if extra is not None and os.path.abspath(extra) in (os.path.abspath(job.model), os.path.abspath(job.output)):
            raise OutputError(f"{extra} would overwrite the model or the output.", "Choose another file name.")
    info = inspect_model(job.model, layout=job.preprocess.layout)
    check_model(info)
    task = detect_task(info, job.task.kind)
    feeds = make_feeds(info, job.inputs)
    spec = resolve_spec(job.preprocess, info)
    ii = info.image_input
    check_batch_one(ii.fixed_batch, job.quantization.batch_one)
    calib_files = list_images(job.calibration.folders, "calibration")
    q = job.quantization
    warnings = settings_warnings(q)
    norm_check = quiet_check(job, info, task, feeds, spec, calib_files, progress, cancel)
    warnings += norm_check.warnings
    calib_files, held_back = hold_back_for_evaluation(job, calib_files)
    if held_back:
        warnings.append(
            f"the evaluation images are calibration images: {held_back} of them were held back from calibration, "
            "so that the numbers are measured on images the calibration did not see."
        )

    with tempfile.TemporaryDirectory(prefix="guiapp-") as tmpdir:
        tmp = Path(tmpdir)
        prepared = prepare(job, info, tmp, progress, cancel)
        present = {n.name for n in prepared.model.graph.node}
        missing = [n for n in q.exclude_nodes if n not in present]
        if missing:
            warnings.append(
                "nodes to keep in float not found after pre-processing (fused or renamed): " + ", ".join(missing[:10])
                + ". See per_layer in the report for the names ONNX Runtime quantizes."
            )
        timings["prepare"] = time.perf_counter() - t

        def make_prepared(model: onnx.ModelProto, name: str) -> Prepared:
            path = tmp / f"{name}.onnx"
            onnx.save(model, str(path))
            return Prepared(path, model, prepared.steps, prepared.header)

        if q.equalize and job.tuning.max_drop is None:
            stream = iter_tensors(seeded_order(calib_files, 7), spec, BIAS_IMAGES, ReadLog(), cancel)
            model, note = equalized(prepared.model, feeds, batches(stream, ii.fixed_batch or 8), cancel)
            prepared = replace(make_prepared(model, "equalized"), steps=(*prepared.steps, note))

        cancel.check()
        t = time.perf_counter()
        batch_size = ii.fixed_batch or job.calibration.batch_size
        # A search tries every strategy from one pass: collect histograms whatever the method.
        cal_settings = replace(job.calibration, method="entropy") if job.tuning.max_drop is not None else job.calibration
        cache_key = {"equalized": True} if q.equalize and job.tuning.max_drop is None else None
        cal = calibrate(
            prepared.model, job.model, feeds, spec, cal_settings, calib_files, batch_size, job.cache, progress, cancel,
            variant=cache_key,
        )

        def calibrate_graph(model: onnx.ModelProto) -> dict:
            """Another graph's statistics (an equalized one, during the search), on the same images; not cached."""
            def as_search(e: ProgressEvent) -> None:
                progress(ProgressEvent(TUNE, e.done, max(e.total, 1), f"calibrating the equalized graph: {e.message}"))

            return calibrate(model, job.model, feeds, spec, cal_settings, calib_files, batch_size, None, as_search, cancel).stats
        if cal.images == 0:
            raise nothing_readable(cal.skipped, "the calibration folder(s)", "Add readable JPEG or PNG images.")
        total = min(job.calibration.max_images, len(calib_files))
        if cal.images < total:
            warnings.append(f"only {cal.images} of {total} calibration images were readable.")
        timings["calibrate"] = time.perf_counter() - t

        # ---- quantize: ranges by strategy, ONNX Runtime writes the graph (or the search picks them)
        cancel.check()
        t = time.perf_counter()
        eval_files, eval_source, excluded = _evaluation_files(job, calib_files, cal)
        protections = []
        if q.protect_outputs:
            protections = find_protections(prepared.model, {n: (st.lo, st.hi) for n, st in cal.stats.items()})
        protected = tuple(dict.fromkeys(n for p in protections for n in p.nodes if n not in q.exclude_nodes))
        ws_args = dict(
            base=Variant(prepared, cal.stats), quant=replace(q, equalize=False), protected=protected,
            percentile=job.calibration.percentile, feeds=feeds, calibrate=calibrate_graph, calib_files=calib_files,
            spec=spec, fixed_batch=ii.fixed_batch, build=build, make_prepared=make_prepared,
        )
        labels = resolve_labels(job.evaluation, eval_files)
        tuning = None
        if job.tuning.max_drop is not None:
            from .tuning.run import tune

            tuned = tune(ws_args, job, eval_files, labels, task, info, tmp, progress, cancel)
            if tuned.cancelled:
                cancel = CancelToken()  # the search stopped on Cancel: the best model so far is still written
            tuning, quantized, variant = tuned.report, tuned.path, tuned.variant
            chosen = tuned.trial.settings
            method, kept_float = chosen.method, list(chosen.float_nodes)
            q = replace(q, per_channel=chosen.per_channel, equalize=chosen.equalize, bias_correction=chosen.bias_correction,
                        exclude_nodes=tuple(dict.fromkeys((*q.exclude_nodes, *protected, *chosen.float_nodes))))
            if not tuning["met"]:
                warnings.append(
                    f"the accuracy target was missed: {tuning['target']['label']} needed at least "
                    f"{tuning['target']['required'] * 100:.1f}%, the best model found reaches "
                    f"{tuned.trial.metric * 100:.1f}% ({tuning['missed_by_points']:.1f} points short; search "
                    f"{'cancelled' if tuned.cancelled else 'stopped: ' + tuning['stopped']}). It was written anyway."
                )
        else:
            progress(ProgressEvent(QUANTIZE, 0, 3, "computing ranges and writing the INT8 graph"))
            method, kept_float = job.calibration.method, []
            ws = Workspace(evalset=None, task=task, ctx=None, goal=None, tmp=tmp, **ws_args)
            settings = TrialSettings(method, q.per_channel, False, q.bias_correction, ())
            quantized = tmp / "quantized.onnx"
            variant = ws.build_trial(settings, quantized, cancel)
            q = _plain_settings(ws, settings, job.quantization)
            if job.quantization.keep_float and job.evaluation.per_layer_images > 0:
                progress(ProgressEvent(QUANTIZE, 1, 3, "per-layer error"))
                rows = _per_layer(job, q, variant, method, quantized, spec, ii, feeds, eval_files, tmp, cancel)
                cancel.check()
                # The layers that add the most error themselves, per channel: a graph output whose
                # score rows are crushed ranks first even when its whole-tensor SQNR looks fine.
                fixed = set(q.exclude_nodes)
                kept_float = [n for n, _ in rank(variant.prepared.model, rows, fixed)][: job.quantization.keep_float]
                progress(ProgressEvent(QUANTIZE, 2, 3, f"re-quantizing with {len(kept_float)} layer(s) in float"))
                settings = replace(settings, float_nodes=tuple(kept_float))
                variant = ws.build_trial(settings, quantized, cancel)
                q = _plain_settings(ws, settings, job.quantization)
            warnings.extend(ws.notes)
        used = variant.prepared
        progress(ProgressEvent(QUANTIZE, 2, 3, "per-layer error"))
        per_layer = _per_layer(job, q, variant, method, quantized, spec, ii, feeds, eval_files, tmp, cancel)
        cancel.check()
        final = tmp / "final.onnx"
        built_with = compute_ranges(variant.stats, StrategySettings(method, job.calibration.percentile),
                                    Target(q.activation_type, q.symmetric_activations))
        form_notes = concat_note(used.model, built_with, q)
        formed = tmp / "formed.onnx"
        form_notes += apply_output_form(quantized, formed, q.pad_channels, q.batch_one, q.ort_optimized)
        _carry_over_metadata(used.header, formed, final)
        progress(ProgressEvent(QUANTIZE, 3, 3, "done"))
        timings["quantize"] = time.perf_counter() - t

        # ---- evaluate (on the temporary file: a cancel here still writes nothing)
        cancel.check()
        t = time.perf_counter()
        ev = evaluate_models(
            job.model, final, {t.name: t.shape for t in info.outputs}, feeds, spec, eval_files, labels, job.evaluation,
            ii.fixed_batch or (1 if q.batch_one else None), progress, cancel,
            seed=job.calibration.seed, task=task, task_settings=job.task,
        )
        ev["eval"].update({"source": eval_source, "excluded_calibration_overlap": excluded})
        timings["evaluate"] = time.perf_counter() - t

        report = {
            "created": now_iso(),
            "model": info.to_dict(),
            "output": str(job.output),
            "fp32": {"path": str(job.model), "size_bytes": info.size_bytes, "latency_ms": ev["latency_ms"]["fp32"]},
            "int8": {"path": str(job.output), "size_bytes": final.stat().st_size, "latency_ms": ev["latency_ms"]["int8"]},
            "task": ev["task"],
            "fidelity": ev["fidelity"],
            "accuracy": ev["accuracy"],
            "latency": ev["latency"],
            "agreement": ev["agreement"],
            "outputs": ev["outputs"],
            "per_layer": per_layer,
            "kept_float": kept_float,
            "protected_outputs": [p.to_dict() for p in protections],
            "quantization": {"per_channel": q.per_channel, "equalize": q.equalize, "bias_correction": q.bias_correction,
                             "exclude_nodes": list(q.exclude_nodes)},
            "tuning": tuning,
            "eval": ev["eval"],
            "calibration": {
                "method": method,
                "images_used": cal.images,
                "images_skipped": len(cal.skipped),
                "skipped_files": [{"file": str(p), "reason": r} for p, r in cal.skipped],
                "seconds": cal.seconds,
                "tensors": len(cal.stats),
                "batch_size": batch_size,
                "cache_used": cal.cache_used,
                "cache": str(job.cache) if job.cache else None,
            },
            "preparation": [*used.steps, *form_notes],
            "preprocess": spec.to_dict(),
            "normalization_check": norm_check.summary,
            "warnings": warnings + ev["warnings"] + broken_warning(ev["fidelity"]["headline"]),
            "timings_s": timings,
            "environment": environment(default_threads()),
            "job": job.to_dict(),
        }
        cancel.check()
        _place(final, job.output)
    if job.cache is not None:
        cal.save_cache(job.cache)
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report, ev["samples"], tuple(eval_files))


def _plain_settings(ws: Workspace, settings: TrialSettings, asked: QuantSettings) -> QuantSettings:
    """The settings a plain run used, as the report states them."""
    return replace(ws.settings_for(settings), equalize=asked.equalize, bias_correction=asked.bias_correction)


def _per_layer(job, q, variant: Variant, method: str, quantized, spec, ii, feeds, eval_files, tmp, cancel) -> list[dict]:
    """Per-layer error on a few held-out images; QOperator models are analysed
    through a QDQ twin with the same ranges and settings ``q``."""
    n = job.evaluation.per_layer_images
    if n <= 0:
        return []
    qdq = quantized
    if q.format != "qdq":
        qdq = tmp / "twin.qdq.onnx"
        ranges = compute_ranges(variant.stats, StrategySettings(method, job.calibration.percentile),
                                Target(q.activation_type, q.symmetric_activations))
        build(variant.prepared, ranges, replace(q, format="qdq"), qdq)
    stream = iter_tensors(seeded_order(eval_files, job.calibration.seed + 1), spec, n, ReadLog(), cancel)
    return per_layer_error(variant.prepared.model, qdq, feeds, batches(stream, ii.fixed_batch or n), cancel)


def hold_back_for_evaluation(job: Job, calib_files: list[Path]) -> tuple[list[Path], int]:
    """Decided before any work: when calibration would read every image of
    the evaluation folders, a fifth of them (at most the evaluation's image
    count) are kept out of calibration. Returns the calibration candidates
    and how many were held back."""
    if not job.evaluation.folders:
        return calib_files, 0
    eval_real = sorted({os.path.realpath(p) for p in list_images(job.evaluation.folders, "evaluation")})
    planned = {os.path.realpath(p) for p in seeded_order(calib_files, job.calibration.seed)[: job.calibration.max_images]}
    if any(r not in planned for r in eval_real):
        return calib_files, 0
    if len(eval_real) < 2:
        raise DatasetError(
            "the only evaluation image is also the only calibration image.",
            "Give an evaluation folder with other images, or more images.",
        )
    k = max(1, min(job.evaluation.max_images, len(eval_real) // 5))
    held = set(seeded_order(eval_real, job.calibration.seed + 1)[:k])
    return [p for p in calib_files if os.path.realpath(p) not in held], len(held)


def _evaluation_files(job: Job, calib_files: list[Path], cal: Calibration) -> tuple[list[Path], str, int]:
    """Evaluation images never include images used for calibration."""
    used = {os.path.realpath(p) for p in cal.used}
    unreadable = {os.path.realpath(p) for p, _ in cal.skipped}
    if job.evaluation.folders:
        files = list_images(job.evaluation.folders, "evaluation")
        held = [p for p in files if os.path.realpath(p) not in used]
        if not held:
            raise DatasetError("every evaluation image was used for calibration.", "Give an evaluation folder with other images.")
        return held, "evaluation folders", len(files) - len(held)
    excluded = used | unreadable
    held = [p for p in calib_files if os.path.realpath(p) not in excluded]
    if held:
        return held, "calibration folders, images not used for calibration", len(calib_files) - len(held)
    # Every image went into calibration: compare on them, and say so.
    return list(cal.used), "calibration images (no held-out images: numbers are optimistic)", 0


_HEADER_FIELDS = ("producer_name", "producer_version", "doc_string", "domain", "model_version")


def _header(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model's metadata_props, producer and doc strings, without its graph."""
    h = onnx.ModelProto()
    h.metadata_props.extend(model.metadata_props)
    for f in _HEADER_FIELDS:
        setattr(h, f, getattr(model, f))
    h.graph.doc_string = model.graph.doc_string
    return h


def _carry_over_metadata(header: onnx.ModelProto, quantized: Path, final: Path) -> None:
    """The output keeps the input's metadata_props, producer and doc strings
    (OCR models keep their character table there, for one)."""
    out = onnx.load(str(quantized))
    del out.metadata_props[:]
    out.metadata_props.extend(header.metadata_props)
    for f in _HEADER_FIELDS:
        setattr(out, f, getattr(header, f))
    out.graph.doc_string = header.graph.doc_string
    onnx.save(out, str(final))


def _place(final: Path, output: Path) -> None:
    """Move the finished model into place atomically."""
    try:
        with atomic_path(output) as part:
            shutil.copyfile(final, part)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}.", "Check free space and permissions.") from None
