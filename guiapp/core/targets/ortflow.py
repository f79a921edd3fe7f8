"""ONNX Runtime's QDQ flow, in the run's temporary folder: prepare the
graph, calibrate, build the INT8 model (as the job sets it, or through the
accuracy-target search), put it in its output form, evaluate it.

The ONNX Runtime target places its result; OpenVINO and TensorRT start from
the same QDQ model and add their own files and checks (:func:`build_qdq`).
Nothing is written outside the temporary folder here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..calibrate.calibration import Calibration, calibrate
from ..calibrate.strategies import StrategySettings, RangeTarget, compute_ranges
from ..context import RunContext
from ..data.dataset import ReadLog, batches, iter_tensors, nothing_readable, seeded_order
from ..evaluate.compare import evaluate_models
from ..evaluate.cpu import current_cpu
from ..evaluate.perlayer import per_layer_error
from ..job import QuantSettings, Recipe
from ..notes import Note
from ..progress import QUANTIZE, TUNE, CancelToken, ProgressEvent
from ..quantize.fastform import amx_int8
from ..quantize.outputform import apply_output_form, concat_note
from ..quantize.prepare import Prepared, build, carry_over_metadata, prepare
from ..quantize.protect import Protection, find_protections
from ..quantize.variants import Variant, VariantBuilder, equalize_prepared
from ..tuning.run import tune
from ..tuning.sensitivity import rank


@dataclass(frozen=True)
class Chosen:
    """The INT8 model a run settled on: its recipe, the graph and statistics
    it came from, its file, and the settings ONNX Runtime's quantizer got."""

    recipe: Recipe
    variant: Variant
    path: Path
    settings: QuantSettings
    kept_float: tuple[str, ...] = ()  # layers the plain run's keep_float sent back


@dataclass(frozen=True)
class OrtBuild:
    """What the flow made in the temporary folder: the final INT8 model, its
    evaluation, the report sections that belong to it, and the calibration
    (a target may read its statistics; the cache is saved once all is placed)."""

    model: Path
    evaluation: dict  # evaluate_models' result
    sections: dict  # per_layer, kept_float, protected_outputs, quantization, tuning, calibration, preparation
    notes: list[Note]
    calibration: Calibration
    eval_files: list[Path]
    cancel: CancelToken  # checks the rest of the run (a fresh one when a cancelled search still writes its best model)


def build_qdq(ctx: RunContext, quant: QuantSettings | None = None) -> OrtBuild:
    """Run the flow with ``quant`` (the job's quantization settings by default)."""
    job, progress = ctx.job, ctx.progress
    q = quant or job.quantization
    search = job.tuning.max_drop is not None
    with ctx.timed("prepare"):
        prepared = prepare(job.model, ctx.info.opset, ctx.tmp, progress, ctx.cancel)
        notes = _missing_exclusions(prepared, q)
    plain_equalize = q.equalize and not search
    if plain_equalize:  # the graph calibrated below is the equalized one
        prepared = equalize_prepared(prepared, ctx.calibration_inputs(), ctx.fixed_batch, ctx.cancel,
                                     ctx.tmp / "equalized.onnx")
    with ctx.timed("calibrate"):
        cal = _calibrate(ctx, prepared, search, plain_equalize, shares_activation_ranges(q))
        notes += _unreadable(ctx, cal)
    eval_files, source, excluded = ctx.evaluation_files(cal.used, cal.skipped)
    with ctx.timed("quantize"):
        protections = find_protections(prepared.model, {n: (st.lo, st.hi) for n, st in cal.stats.items()}) if q.protect_outputs else []
        protected = tuple(dict.fromkeys(n for p in protections for n in p.nodes if n not in q.exclude_nodes))
        builder = _builder(ctx, Variant(prepared, cal.stats), replace(q, equalize=False), protected, search)
        if search:
            chosen, tuning, cancel = _searched(ctx, builder, q, eval_files, notes)
        else:
            chosen, tuning, cancel = _plain(ctx, builder, q, eval_files), None, ctx.cancel
            notes += [Note("quantize.variant", n) for n in builder.notes]
        progress(ProgressEvent(QUANTIZE, 2, 3, "per-layer error"))
        per_layer = per_layer_rows(ctx, chosen, eval_files, cancel)
        cancel.check()
        final, form_notes = _output_form(ctx, chosen)
        progress(ProgressEvent(QUANTIZE, 3, 3, "done"))
    with ctx.timed("evaluate"):
        cancel.check()
        fixed = ctx.fixed_batch or (1 if chosen.settings.batch_one else None)
        with ctx.pool() as pool:  # many images: split across its workers (latency is then timed alone)
            ev = evaluate_models(job.model, final, ctx.eval_plan(eval_files, fixed), progress, cancel, pool)
        ev["eval"].update({"source": source, "excluded_calibration_overlap": excluded})
    sections = _sections(ctx, chosen, cal, protections, per_layer, tuning, form_notes)
    return OrtBuild(final, ev, sections, notes, cal, eval_files, cancel)


def _missing_exclusions(prepared: Prepared, q: QuantSettings) -> list[Note]:
    present = {n.name for n in prepared.model.graph.node}
    missing = [n for n in q.exclude_nodes if n not in present]
    if not missing:
        return []
    return [Note("quantize.exclusions_missing",
                 "nodes to keep in float not found after pre-processing (fused or renamed): " + ", ".join(missing[:10])
                 + ". See per_layer in the report for the names ONNX Runtime quantizes.")]


def shares_activation_ranges(q: QuantSettings) -> bool:
    """Whether a Relu or Clip input may take its output's statistics (as ONNX
    Runtime's quantizer takes its range): not where every tensor's own range
    is written out, as in TensorRT's calibration cache."""
    return not q.tensorrt_form


def _calibrate(ctx: RunContext, prepared: Prepared, search: bool, equalized: bool, shared: bool) -> Calibration:
    """Statistics of the prepared graph (a search tries every strategy from
    one pass: histograms whatever the method)."""
    job = ctx.job
    settings = replace(job.calibration, method="entropy") if search else job.calibration
    inputs = ctx.calibration_inputs(settings=settings, share_activation_ranges=shared)
    cal = calibrate(prepared.model, inputs, ctx.progress, ctx.cancel,
                    variant={"equalized": True} if equalized else None)
    if cal.images == 0:
        raise nothing_readable(cal.skipped, "the calibration folder(s)", "Add readable JPEG or PNG images.")
    return cal


def _unreadable(ctx: RunContext, cal: Calibration) -> list[Note]:
    total = min(ctx.job.calibration.max_images, len(ctx.calib_files))
    if cal.images < total:
        return [Note("calibrate.unreadable", f"only {cal.images} of {total} calibration images were readable.")]
    return []


def _builder(ctx: RunContext, base: Variant, q: QuantSettings, protected: tuple[str, ...], search: bool) -> VariantBuilder:
    def as_search(e: ProgressEvent) -> None:
        ctx.progress(ProgressEvent(TUNE, e.done, max(e.total, 1), f"calibrating the equalized graph: {e.message}"))

    settings = replace(ctx.job.calibration, method="entropy") if search else ctx.job.calibration
    source = ctx.calibration_inputs(settings=settings, cache_path=None, share_activation_ranges=shares_activation_ranges(q))
    return VariantBuilder(base, q, protected, ctx.job.calibration.percentile, source, ctx.fixed_batch, ctx.tmp, as_search)


def _plain(ctx: RunContext, builder: VariantBuilder, asked: QuantSettings, eval_files: list[Path]) -> Chosen:
    """The model as the job sets it; with keep_float, again with the worst layers in float."""
    ctx.progress(ProgressEvent(QUANTIZE, 0, 3, "computing ranges and writing the INT8 graph"))
    recipe = Recipe(ctx.job.calibration.method, asked.per_channel, False, asked.bias_correction)
    chosen = _chosen(builder, recipe, ctx.tmp / "quantized.onnx", asked, ctx.cancel)
    if asked.keep_float and ctx.job.evaluation.per_layer_images > 0:
        ctx.progress(ProgressEvent(QUANTIZE, 1, 3, "per-layer error"))
        rows = per_layer_rows(ctx, chosen, eval_files, ctx.cancel)
        ctx.cancel.check()
        # The layers that add the most error themselves, per channel: a graph output whose
        # score rows are crushed ranks first even when its whole-tensor SQNR looks fine.
        kept = tuple(n for n, _ in rank(chosen.variant.prepared.model, rows, set(chosen.settings.exclude_nodes)))[: asked.keep_float]
        ctx.progress(ProgressEvent(QUANTIZE, 2, 3, f"re-quantizing with {len(kept)} layer(s) in float"))
        chosen = replace(_chosen(builder, replace(recipe, float_nodes=kept), chosen.path, asked, ctx.cancel), kept_float=kept)
    return chosen


def _chosen(builder: VariantBuilder, recipe: Recipe, path: Path, asked: QuantSettings, cancel: CancelToken) -> Chosen:
    variant = builder.build(recipe, path, cancel)
    # The report states equalization and bias correction as asked (a plain run equalized before calibrating).
    settings = replace(builder.settings_for(recipe), equalize=asked.equalize, bias_correction=asked.bias_correction)
    return Chosen(recipe, variant, path, settings)


def _searched(ctx: RunContext, builder: VariantBuilder, q: QuantSettings, eval_files: list[Path],
              notes: list[Note]) -> tuple[Chosen, dict, CancelToken]:
    """The accuracy-target search's choice. A search stopped by Cancel still
    writes its best model so far: the rest of the run gets a fresh token."""
    fixed = frozenset(q.exclude_nodes) | frozenset(builder.protected)
    # The search keeps FP32's outputs once: no noise floor per trial (the final evaluation measures it).
    plan = replace(ctx.eval_plan(eval_files), noise_images=0)
    with ctx.pool() as executor:
        tuned = tune(ctx.job, builder, plan, fixed, ctx.tmp, ctx.progress, ctx.cancel, executor)
    r = tuned.trial.recipe
    settings = replace(q, per_channel=r.per_channel, equalize=r.equalize, bias_correction=r.bias_correction,
                       exclude_nodes=tuple(dict.fromkeys((*q.exclude_nodes, *builder.protected, *r.float_nodes))))
    report = tuned.report
    if not report["met"]:
        notes.append(Note("tuning.missed", (
            f"the accuracy target was missed: {report['target']['label']} needed at least "
            f"{report['target']['required'] * 100:.1f}%, the best model found reaches "
            f"{tuned.trial.metric * 100:.1f}% ({report['missed_by_points']:.1f} points short; search "
            f"{'cancelled' if tuned.cancelled else 'stopped: ' + report['stopped']}). It was written anyway.")))
    cancel = CancelToken() if tuned.cancelled else ctx.cancel
    return Chosen(r, tuned.variant, tuned.path, settings, r.float_nodes), report, cancel


def per_layer_rows(ctx: RunContext, chosen: Chosen, eval_files: list[Path], cancel: CancelToken) -> list[dict]:
    """Per-layer error on a few held-out images; QOperator models are analysed
    through a QDQ twin with the same ranges and settings."""
    n = ctx.job.evaluation.per_layer_images
    if n <= 0:
        return []
    qdq = chosen.path
    if chosen.settings.format != "qdq":
        qdq = ctx.tmp / "twin.qdq.onnx"
        build(chosen.variant.prepared, _ranges(ctx, chosen), replace(chosen.settings, format="qdq"), qdq)
    stream = iter_tensors(seeded_order(eval_files, ctx.job.calibration.seed + 1), ctx.spec, n, ReadLog(), cancel)
    return per_layer_error(chosen.variant.prepared.model, qdq, ctx.feeds, batches(stream, ctx.fixed_batch or n), cancel)


def _ranges(ctx: RunContext, chosen: Chosen) -> dict:
    q = chosen.settings
    return compute_ranges(chosen.variant.stats, StrategySettings(chosen.recipe.method, ctx.job.calibration.percentile),
                          RangeTarget(q.activation_type, q.symmetric_activations))


def _output_form(ctx: RunContext, chosen: Chosen) -> tuple[Path, list[str]]:
    """The chosen model in its output form, with the input's metadata: (path, notes).

    ``pad_channels`` stands for the forms made for ONNX Runtime's CPU kernels:
    the targets that hand the QDQ graph to another runtime (OpenVINO,
    TensorRT) turn it off. With it, a CPU with AMX also gets its wide
    pointwise convolutions in the form ONNX Runtime runs on AMX (fastform.py;
    the same outputs on every CPU)."""
    q = chosen.settings
    notes = concat_note(chosen.variant.prepared.model, _ranges(ctx, chosen), q)
    formed, final = ctx.tmp / "formed.onnx", ctx.tmp / "final.onnx"
    amx = q.pad_channels and not q.tensorrt_form and amx_int8(current_cpu())
    notes += apply_output_form(chosen.path, formed, q.pad_channels, q.batch_one, q.ort_optimized, amx)
    carry_over_metadata(chosen.variant.prepared.header, formed, final)
    return final, notes


def _sections(ctx: RunContext, chosen: Chosen, cal: Calibration, protections: list[Protection], per_layer: list[dict],
              tuning: dict | None, form_notes: list[str]) -> dict:
    q, job = chosen.settings, ctx.job
    return {
        "per_layer": per_layer,
        "kept_float": list(chosen.kept_float),
        "protected_outputs": [p.to_dict() for p in protections],
        "quantization": {"per_channel": q.per_channel, "equalize": q.equalize, "bias_correction": q.bias_correction,
                         "exclude_nodes": list(q.exclude_nodes)},
        "tuning": tuning,
        "calibration": {
            "method": chosen.recipe.method,
            "images_used": cal.images,
            "images_skipped": len(cal.skipped),
            "skipped_files": [{"file": str(p), "reason": r} for p, r in cal.skipped],
            "seconds": cal.seconds,
            "tensors": len(cal.stats),
            "batch_size": ctx.fixed_batch or job.calibration.batch_size,
            "cache_used": cal.cache_used,
            "cache": str(job.cache) if job.cache else None,
        },
        "preparation": [*chosen.variant.prepared.steps, *form_notes],
    }


def cache_files(ctx: RunContext, build_: OrtBuild) -> list[tuple[Path, Path]]:
    """The calibration cache to place beside the outputs, when the job keeps
    one and this run made new statistics."""
    cal, job = build_.calibration, ctx.job
    if job.cache is None or cal.cache_used or not cal.images:
        return []
    staged = ctx.tmp / "calibration.npz"
    cal.save_cache(staged)
    return [(staged, Path(job.cache))]
