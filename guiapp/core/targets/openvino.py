"""OpenVINO (Intel CPUs, GPUs, NPUs): OpenVINO compiles ONNX Runtime's QDQ
model as it is. This target saves it as OpenVINO IR (.xml/.bin), reloads the
IR and checks it against FP32 on the evaluation images, and measures latency
in OpenVINO, FP32 compiled with INFERENCE_PRECISION_HINT=f32 (its default on
CPUs with bf16 is bf16, not the FP32 the user exported).

An optional extra (``pip install 'guiapp[openvino]'``). Importing openvino
would create ``~/intel/openvino_ga_cid`` and ``~/intel/stats`` (telemetry of
its converter): the telemetry package is blocked before the import, so that
openvino falls back to its built-in stub and writes nothing.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ..atomic import place_files
from ..context import QuantResult, RunContext
from ..evaluate.compare import Runners, compare_on_files
from ..evaluate.latency import ROUNDS, time_models
from ..evaluate.sessions import default_threads, make_session
from ..notes import Note
from ..progress import EVALUATE, ProgressEvent
from ..report.document import base_report
from ..report.summary import write_report
from .base import Target
from .ortflow import build_qdq, cache_files

INSTALL = "OpenVINO is not installed: pip install 'guiapp[openvino]' (about 180 MB)."


def availability(options=None) -> str:
    return "" if importlib.util.find_spec("openvino") is not None else INSTALL


def import_openvino():
    """openvino, with its telemetry blocked (nothing written to ~/intel)."""
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # its ImportError makes openvino use a stub
    import openvino

    return openvino


class Compiled:
    """An OpenVINO compiled model with ONNX Runtime's ``run(names, feed)``
    (what the fidelity and latency code call), outputs in ``names``' order."""

    def __init__(self, compiled, names: list[str]) -> None:
        self.request = compiled.create_infer_request()
        outputs = list(compiled.outputs)
        by_name = {n: o for o in outputs for n in o.get_names()}
        self.outputs = [by_name.get(n, outputs[i] if i < len(outputs) else None) for i, n in enumerate(names)]

    def run(self, names, feed: dict) -> list[np.ndarray]:
        result = self.request.infer(feed)
        return [np.array(result[o]) for o in self.outputs]


def compile_config(threads: int) -> dict:
    # f32 for both: the comparison is about INT8, not bf16; threads as ONNX Runtime gets them.
    return {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}


def ir_paths(output: Path) -> tuple[Path, Path]:
    stem = output.name.removesuffix(".onnx")
    return output.with_name(stem + ".xml"), output.with_name(stem + ".bin")


def run(ctx: RunContext) -> QuantResult:
    ov = import_openvino()
    job = ctx.job
    # The plain QDQ graph: OpenVINO does not read ONNX Runtime's fused graph, and its own
    # kernels gain nothing from padded channels.
    built = build_qdq(ctx, replace(job.quantization, ort_optimized=False, pad_channels=False))
    ctx = replace(ctx, cancel=built.cancel)
    cancel = ctx.cancel
    xml, bin_ = ir_paths(built.model)
    core = ov.Core()
    ov.save_model(core.read_model(str(built.model)), str(xml), compress_to_fp16=False)
    cancel.check()
    config = compile_config(default_threads())
    with ctx.timed("evaluate"):
        ev, latency = _check_ir(ctx, core, xml, config, built.eval_files)
    version = ov.__version__.split("-")[0]
    ort = built.evaluation
    ort_check = {k: ort[k] for k in ("fidelity", "accuracy", "agreement", "outputs", "latency", "latency_ms")}
    # The numbers of what the user deploys: the reloaded IR in OpenVINO.
    evaluation = {**ev, "eval": ort["eval"], "latency_ms": latency["ms"], "latency": latency["context"] | {"runtime": f"OpenVINO {version}"}}
    out_xml, out_bin = ir_paths(job.output)
    target = {
        "kind": "openvino", "title": TARGET.title, "openvino": ov.__version__, "device": "CPU",
        "compile_config": config,
        "checked_in": "OpenVINO (CPU): the IR saved by this run, reloaded, against FP32 in ONNX Runtime",
        "ir": {"xml": str(out_xml), "bin": str(out_bin), "size_bytes": xml.stat().st_size + bin_.stat().st_size},
        "evaluated_images": ev["images"],
        "onnxruntime": ort_check,
    }
    said = Note("target.openvino_latency", f"latency measured in OpenVINO {version} on this CPU (both models with "
                                          "INFERENCE_PRECISION_HINT=f32); ONNX Runtime's figures are under target.onnxruntime.")
    report = base_report(ctx.facts(built.model.stat().st_size), evaluation, {**built.sections, "target": target},
                         [*ctx.notes, *built.notes, *ort["warnings"], *latency["warnings"], said])
    cancel.check()
    place_files([(bin_, out_bin), (xml, out_xml), (built.model, job.output), *cache_files(ctx, built)])
    if job.report is not None:
        write_report(report, job.report)
    return QuantResult(job.output, report, ort["samples"], tuple(built.eval_files))


def _check_ir(ctx: RunContext, core, xml: Path, config: dict, files: list[Path]) -> tuple[dict, dict]:
    """The reloaded IR against FP32 in ONNX Runtime on the evaluation images,
    then both timed in OpenVINO (each model alone, compiled afresh per round)."""
    job = ctx.job
    session = make_session(job.model)
    names = [o.name for o in session.get_outputs()]
    ir = Compiled(core.compile_model(core.read_model(str(xml)), "CPU", config), names)  # the reloaded IR is what is checked
    plan = ctx.eval_plan(files)
    ev, first = compare_on_files(Runners(partial(session.run, names), partial(ir.run, names), names), plan,
                                 ctx.progress, ctx.cancel)
    del ir, session

    def on_step(done: int, planned: int) -> None:
        ctx.progress(ProgressEvent(EVALUATE, done, planned, "measuring latency in OpenVINO (each model alone, in rounds)"))

    def compiled(model, threads_):  # latency.measure_latency's session factory
        return Compiled(core.compile_model(core.read_model(str(model)), "CPU", config), names)

    on_step(0, ROUNDS * 2)
    sample = np.stack([first] * (ctx.fixed_batch or 1))
    ms, context, busy = time_models({"fp32": job.model, "int8": xml}, ctx.feeds(sample), job.evaluation.latency_runs,
                                    config["INFERENCE_NUM_THREADS"], ctx.cancel, on_step, sample.shape[0],
                                    session_factory=compiled)
    return ev, {"ms": ms, "context": context, "warnings": busy}


TARGET = Target(
    kind="openvino",
    title="OpenVINO (Intel)",
    suffix=".onnx",
    summary="The QDQ model plus its OpenVINO IR (.xml/.bin), checked and timed in OpenVINO on this CPU.",
    run=run,
    availability=availability,
    found=lambda options: "" if availability(options) else f"OpenVINO {_version()}",
    companions=lambda output: list(ir_paths(output)),
    note="Latency and accuracy are measured in OpenVINO on this CPU, on the IR it will load.",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "(version unknown)"
