"""Deployment targets: the registry and its interface, the job's target
section and the command line, and the worker client every foreign toolkit
goes through (cancel, crash, error lines) with a fake worker."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from dataclasses import fields, replace
from pathlib import Path

import pytest

from guiapp.cli import build_parser, job_from_args, main
from guiapp.core.errors import Cancelled, JobError
from guiapp.core.job import Job, QuantOption, QuantSettings, TargetSettings
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.progress import CancelToken
from guiapp.core.targets import openvino as ov_target
from guiapp.core.targets import rknn as rknn_target
from guiapp.core.targets.registry import TARGET_KINDS, TARGETS
from guiapp.core.targets.worker import WorkerError, run_worker


def test_every_target_kind_is_registered_with_its_interface(tmp_path):
    assert tuple(TARGETS) == TARGET_KINDS
    for kind, t in TARGETS.items():
        assert t.kind == kind and t.title and t.summary and callable(t.run)
        assert t.suffix in (".onnx", ".rknn")
        assert isinstance(t.unavailable(TargetSettings(kind=kind)), str)
        assert all(isinstance(p, Path) for p in t.companions(tmp_path / f"m{t.suffix}"))
        assert t.honours <= set(QuantOption)
        if t.options is not None:
            assert t.options_of(TargetSettings(kind=kind)) == t.options()  # defaults when the job has none


def test_every_quant_option_names_a_setting():
    names = {f.name for f in fields(QuantSettings)}
    assert {o.value for o in QuantOption} <= names


def test_the_job_document_keeps_the_target_options_under_its_kind(tmp_path, model_path, calib_dir):
    rknn = rknn_target.RknnOptions("rk3566", tmp_path / "env" / "bin" / "python")
    target = TargetSettings("rknn", {"rknn": rknn})
    job = Job(model_path, tmp_path / "m.rknn", target=target)
    path = tmp_path / "job.qsjob"
    job.save(path)
    saved = json.loads(path.read_text())
    assert saved["target"] == {"kind": "rknn", "rknn": {"platform": "rk3566", "python": "env/bin/python"}}
    assert load_job(path).target == target
    # An older job without the section gets ONNX Runtime.
    del saved["target"]
    path.write_text(json.dumps(saved))
    assert load_job(path).target == TargetSettings()


def test_a_version_1_job_file_is_read_with_its_flat_target_and_task_options(tmp_path, model_path):
    doc = {"version": 1, "model": str(model_path),
           "target": {"kind": "tensorrt", "platform": "rk3566", "rknn_python": None, "tensorrt_version": "8.6.1"},
           "task": {"kind": "detection", "box_format": "xyxy", "score_threshold": 0.4, "nms_iou": 0.5, "match_iou": 0.5,
                    "mask_threshold": 0.3}}
    job = job_from_dict(doc)
    assert job.target.kind == "tensorrt"
    assert TARGETS["tensorrt"].options_of(job.target).version == "8.6.1"
    assert TARGETS["rknn"].options_of(job.target).platform == "rk3566"
    assert job.task.kind == "detection"
    assert job.task.options_for("detection").score_threshold == 0.4
    assert job.task.options_for("detection").box_format == "xyxy"
    assert job.task.options_for("dense").mask_threshold == 0.3


@pytest.mark.parametrize(
    "section, field",
    [({"kind": "tflite"}, "job.target.kind"), ({"rknn": {"platform": "rk9999"}}, "job.target.rknn.platform"),
     ({"tensorrt": {"version": "ten"}}, "job.target.tensorrt.version"),
     ({"tensorrt": {"version": 10}}, "job.target.tensorrt.version"),
     ({"chip": "rk3588"}, "job.target.chip"), ({"onnxruntime": {}}, "job.target.onnxruntime"),
     ({"rknn": {"chip": "rk3588"}}, "job.target.rknn.chip")],
)
def test_a_bad_target_section_names_the_field(tmp_path, model_path, section, field):
    doc = Job(model_path).to_dict()
    doc["target"].update(section)
    with pytest.raises(JobError) as info:
        job_from_dict(doc)
    assert info.value.field == field


def test_target_flags_on_the_command_line(tmp_path, model_path, calib_dir):
    args = build_parser().parse_args([
        "quantize", str(model_path), "--calib", str(calib_dir), "--out", str(tmp_path / "m.rknn"), "--target", "rknn",
        "--rknn-platform", "rv1106", "--rknn-python", "/opt/rk/bin/python",
    ])
    job = job_from_args(args)
    assert job.target == TargetSettings("rknn", {"rknn": rknn_target.RknnOptions("rv1106", Path("/opt/rk/bin/python"))})
    assert job.cache is None  # RKNN-Toolkit2 calibrates itself: no statistics to keep
    args = build_parser().parse_args(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(tmp_path / "m.onnx"),
                                      "--target", "tensorrt", "--tensorrt-version", "8.6.1"])
    assert TARGETS["tensorrt"].options_of(job_from_args(args).target).version == "8.6.1"
    args = build_parser().parse_args(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(tmp_path / "m.onnx"),
                                      "--target", "tensorrt", "--tensorrt-version", "ten"])
    with pytest.raises(JobError) as info:
        job_from_args(args)
    assert info.value.field == "--tensorrt-version"


def test_without_the_toolkit_the_app_says_what_to_install(tmp_path, model_path, calib_dir, capsys, monkeypatch):
    missing = tmp_path / "no-env" / "bin" / "python"
    out = tmp_path / "m.rknn"
    code = main(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(out), "--target", "rknn",
                 "--rknn-python", str(missing)])
    err = capsys.readouterr().err
    assert code == 2
    assert "scripts/rknn-env" in err and str(missing) in err
    assert not out.exists()
    # A Python without the toolkit: named as such.
    code = main(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(out), "--target", "rknn",
                 "--rknn-python", sys.executable])
    assert code == 2 and "has no rknn-toolkit2" in capsys.readouterr().err
    # OpenVINO missing: the extra to install.
    monkeypatch.setattr(ov_target.importlib.util, "find_spec", lambda name: None)
    code = main(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(tmp_path / "m.onnx"), "--target", "openvino"])
    assert code == 2 and "pip install 'guiapp[openvino]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_an_rknn_output_must_be_named_rknn(tmp_path, model_path, calib_dir, capsys):
    code = main(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(tmp_path / "m.onnx"), "--target", "rknn"])
    assert code == 2 and "does not end in .rknn" in capsys.readouterr().err


def test_methods_without_an_rknn_counterpart_are_refused(model_path):
    from guiapp.core.data.preprocess import PreprocessSpec

    spec = PreprocessSpec(layout="nchw", size=(32, 32))
    job = Job(model_path, target=TargetSettings(kind="rknn"))
    for ours, theirs in (("minmax", "normal"), ("entropy", "kl_divergence"), ("mse", "mmse")):
        j = replace(job, calibration=replace(job.calibration, method=ours))
        assert rknn_target.refuses(j) == ""
        assert rknn_target.toolkit_config(j, rknn_target.RknnOptions(), spec)["quantized_algorithm"] == theirs
    for method in ("ema-minmax", "percentile"):
        assert "no counterpart" in rknn_target.refuses(replace(job, calibration=replace(job.calibration, method=method)))


# ---------------------------------------------------------------- the worker client


def fake_worker(tmp_path: Path, body: str) -> list[str]:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import json, os, sys, time
        job = json.loads(sys.stdin.read())
        def send(**m):
            sys.stdout.write(json.dumps(m) + "\\n"); sys.stdout.flush()
    """) + textwrap.dedent(body))
    return [sys.executable, str(script)]


def test_the_worker_result_and_messages_come_back(tmp_path):
    argv = fake_worker(tmp_path, """
        send(progress={"phase": "build", "done": 1, "total": 2})
        print("not json: the toolkit prints too")
        send(log="W something")
        open("written-here", "w").close()
        send(result={"echo": job["x"], "cwd": os.getcwd()})
    """)
    seen = []
    result = run_worker(argv, {"x": 42}, tmp_path, seen.append, CancelToken())
    assert result == {"echo": 42, "cwd": str(tmp_path)}
    assert seen == [{"progress": {"phase": "build", "done": 1, "total": 2}}, {"log": "W something"}]
    assert (tmp_path / "written-here").exists()  # the worker works in the folder it is given


@pytest.mark.parametrize(
    "body, words",
    [
        ("send(error='ValueError: unsupported op Foo', trace='Traceback ... Foo')", "unsupported op Foo"),
        ("sys.stderr.write('Segmentation fault in libfoo\\n'); sys.stderr.flush(); os._exit(139)",
         "exit code 139 without a result; its last words: Segmentation fault in libfoo"),
        ("os.kill(os.getpid(), 9)", "killed by signal 9"),
        ("send(progress={}); sys.exit(0)", "exit code 0 without a result"),
    ],
)
def test_a_failing_worker_is_a_clear_error_never_a_hang(tmp_path, body, words):
    with pytest.raises(WorkerError) as info:
        run_worker(fake_worker(tmp_path, body), {}, tmp_path, lambda m: None, CancelToken(), "the fake worker")
    assert words in str(info.value)


def test_a_missing_python_is_a_clear_error(tmp_path):
    with pytest.raises(WorkerError, match="cannot start"):
        run_worker([str(tmp_path / "nope" / "python")], {}, tmp_path, lambda m: None, CancelToken())


def test_cancel_terminates_the_worker_and_its_children(tmp_path):
    """The worker ignores SIGTERM in a child and never reads its own cancel:
    the whole process group goes, within a second of the cancel."""
    argv = fake_worker(tmp_path, """
        import signal, subprocess
        child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"])
        open("pids", "w").write(f"{os.getpid()} {child.pid}")
        send(progress={"phase": "build", "done": 0, "total": 1})
        time.sleep(60)
    """)
    cancel = CancelToken()
    started = threading.Event()
    box: dict = {}

    def on_message(m):
        started.set()

    def work():
        try:
            run_worker(argv, {}, tmp_path, on_message, cancel)
        except BaseException as exc:  # noqa: BLE001
            box["exc"] = exc
            box["t"] = time.monotonic()

    t = threading.Thread(target=work)
    t.start()
    assert started.wait(30)
    t0 = time.monotonic()
    cancel.cancel()
    t.join(10)
    assert isinstance(box["exc"], Cancelled)
    assert box["t"] - t0 < 1.0
    for pid in map(int, (tmp_path / "pids").read_text().split()):
        # SIGKILL is sent; on a loaded machine the kernel may take a moment to end the process.
        deadline = time.monotonic() + 2.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), f"process {pid} survived the cancel"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waits for its parent to reap it: it runs nothing any more.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_rknn_refuses_a_search_and_per_tensor_aids_up_front(tmp_path, model_path, calib_dir, capsys):
    from guiapp.core.job import TuningSettings

    job = Job(model_path, target=TargetSettings(kind="rknn"))
    assert "accuracy-target search" in rknn_target.refuses(replace(job, tuning=TuningSettings(max_drop=1.0)))
    assert "equalization" in rknn_target.refuses(replace(job, quantization=replace(job.quantization, equalize=True)))
    assert "output form" in rknn_target.refuses(replace(job, quantization=replace(job.quantization, ort_optimized=True)))
    # A refusal comes before anything else is checked or run (the toolkit is not even looked for).
    out = tmp_path / "m.rknn"
    code = main(["quantize", str(model_path), "--calib", str(calib_dir), "--out", str(out), "--target", "rknn",
                 "--max-drop", "1", "--rknn-python", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert code == 2 and "accuracy-target search" in err and not out.exists()
