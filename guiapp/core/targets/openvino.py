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
import tempfile
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from ..model.feeds import make_feeds
from ..job import Job
from ..evaluate.latency import ROUNDS, time_models
from ..model.modelinfo import inspect_model
from ..pipeline import QuantResult, resolve_spec
from ..progress import EVALUATE, CancelToken, ProgressEvent, ProgressFn, no_progress
from ..evaluate.sessions import default_threads, make_session
from ..tasks import detect_task
from .base import Target, TargetSettings, require
from .onnxflow import cache_files, compare_on_files, place, run_onnx_flow

INSTALL = "OpenVINO is not installed: pip install 'guiapp[openvino]' (about 180 MB)."


def availability(settings: TargetSettings) -> str:
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


def run(job: Job, progress: ProgressFn = no_progress, cancel: CancelToken | None = None, overwrite: bool = False) -> QuantResult:
    cancel = cancel or CancelToken()
    require(TARGET, job.target)
    ov = import_openvino()
    with tempfile.TemporaryDirectory(prefix="guiapp-openvino-") as tmpdir:
        tmp = Path(tmpdir)
        # The plain QDQ graph: OpenVINO does not read ONNX Runtime's fused graph, and its own
        # kernels gain nothing from padded channels.
        quant = replace(job.quantization, ort_optimized=False, pad_channels=False)
        result, cache = run_onnx_flow(job, quant, tmp, progress, cancel, overwrite)
        report = result.report
        onnx_out = tmp / Path(job.output).name
        xml, bin_ = ir_paths(onnx_out)
        core = ov.Core()
        ov.save_model(core.read_model(str(onnx_out)), str(xml), compress_to_fp16=False)
        cancel.check()
        threads = default_threads()
        config = compile_config(threads)
        info = inspect_model(job.model, layout=job.preprocess.layout)
        feeds = make_feeds(info, job.inputs)
        spec = resolve_spec(job.preprocess, info)
        task = detect_task(info, job.task.kind)
        session = make_session(job.model)
        names = [o.name for o in session.get_outputs()]
        ir = Compiled(core.compile_model(core.read_model(str(xml)), "CPU", config), names)  # the reloaded IR is what is checked
        ev, first = compare_on_files(job, info, feeds, spec, task, list(result.eval_files), names,
                                     partial(session.run, names), partial(ir.run, names), progress, cancel)
        del ir, session  # the latency below times each model alone, compiled afresh per round
        total = ROUNDS * 2

        def on_step(done: int, planned: int) -> None:
            progress(ProgressEvent(EVALUATE, done, planned, "measuring latency in OpenVINO (each model alone, in rounds)"))

        def compiled(model, threads_):  # latency.measure_latency's session factory
            return Compiled(core.compile_model(core.read_model(str(model)), "CPU", config), names)

        on_step(0, total)
        sample = np.stack([first] * (info.image_input.fixed_batch or 1))
        latency, context, busy = time_models({"fp32": job.model, "int8": xml}, feeds(sample), job.evaluation.latency_runs,
                                             threads, cancel, on_step, sample.shape[0], session_factory=compiled)
        report["warnings"].extend(busy)
        ort_check = {k: report[k] for k in ("fidelity", "accuracy", "agreement", "outputs", "latency")}
        report["latency"] = context | {"runtime": f"OpenVINO {ov.__version__.split('-')[0]}"}
        ort_check["latency_ms"] = {"fp32": report["fp32"]["latency_ms"], "int8": report["int8"]["latency_ms"]}
        # The numbers of what the user deploys: the reloaded IR in OpenVINO.
        report.update({k: ev[k] for k in ("task", "fidelity", "accuracy", "agreement", "outputs")})
        report["fp32"]["latency_ms"], report["int8"]["latency_ms"] = latency["fp32"], latency["int8"]
        out_xml, out_bin = ir_paths(Path(job.output))
        report["target"] = {
            "kind": "openvino", "title": TARGET.title, "openvino": ov.__version__, "device": "CPU",
            "compile_config": config,
            "checked_in": "OpenVINO (CPU): the IR saved by this run, reloaded, against FP32 in ONNX Runtime",
            "ir": {"xml": str(out_xml), "bin": str(out_bin), "size_bytes": xml.stat().st_size + bin_.stat().st_size},
            "evaluated_images": ev["images"],
            "onnxruntime": ort_check,
        }
        report["warnings"].append(
            f"latency measured in OpenVINO {ov.__version__.split('-')[0]} on this CPU (both models with "
            "INFERENCE_PRECISION_HINT=f32); ONNX Runtime's figures are under target.onnxruntime."
        )
        cancel.check()
        place([(bin_, out_bin), (xml, out_xml), (onnx_out, Path(job.output)), *cache_files(cache, job, result)], report, job)
    return QuantResult(Path(job.output), report, result.samples, result.eval_files)


TARGET = Target(
    kind="openvino",
    title="OpenVINO (Intel)",
    suffix=".onnx",
    summary="The QDQ model plus its OpenVINO IR (.xml/.bin), checked and timed in OpenVINO on this CPU.",
    availability=availability,
    run=run,
    companions=lambda output: list(ir_paths(output)),
    found=lambda settings: "" if availability(settings) else f"OpenVINO {_version()}",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openvino")
    except PackageNotFoundError:
        return "(version unknown)"
