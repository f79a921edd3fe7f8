"""The RKNN target. Tests marked ``rknn`` run RKNN-Toolkit2 through the worker
in its own environment (scripts/test-rknn makes it when missing); the others
check what the app does on its side, without the toolkit."""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builders import image_folder
from guiapp.core.notes import texts
from guiapp.core.demo import demo_folder
from guiapp.core.errors import Cancelled
from guiapp.core.data.imagefile import open_rgb
from guiapp.core.job import Job, TargetSettings
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.run import quantize
from guiapp.core.data.preprocess import PreprocessSpec, model_pixels
from guiapp.core.progress import QUANTIZE, CancelToken
from guiapp.core.targets import rknn, rknn_files
from guiapp.core.targets.rknn import RknnOptions
from guiapp.core.targets.rknn_board import board_snippet
from guiapp.core.targets.rknn_worker import parse_error_analysis
from guiapp.core.tasks import TaskGuess


def need_toolkit() -> None:
    problem = rknn.availability(RknnOptions())
    if problem:
        if os.environ.get("GUIAPP_REQUIRE_RKNN"):
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture
def private_temp(tmp_path, monkeypatch) -> Path:
    """A temp folder of the test's own, and a working directory to watch."""
    tmp = tmp_path / "temp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return tmp


def demo_rknn_job(out_dir: Path, **calibration) -> Job:
    job = load_job(demo_folder() / "demo.job.json")
    return replace(
        job, output=out_dir / "demo.rknn", report=out_dir / "demo.report.json", cache=None,
        calibration=replace(job.calibration, max_images=30, **calibration),
        evaluation=replace(job.evaluation, max_images=60, per_layer_images=1),
        target=TargetSettings("rknn", {"rknn": RknnOptions("rk3588")}),
    )


def leftovers(temp: Path) -> list[str]:
    return [p.name for p in temp.iterdir() if p.name.startswith("guiapp-")]


@pytest.mark.rknn
def test_the_demo_model_through_the_worker(tmp_path, private_temp):
    need_toolkit()
    out = tmp_path / "out"
    out.mkdir()
    job = demo_rknn_job(out)
    events = []
    result = quantize(job, events.append)
    r = result.report
    assert (out / "demo.rknn").stat().st_size == r["int8"]["size_bytes"] > 10_000
    assert (out / "demo_board.py").is_file() and (out / "demo.report.json").is_file()
    assert r["target"]["kind"] == "rknn" and r["target"]["target_platform"] == "rk3588"
    assert r["target"]["quantized_algorithm"] == "normal" and r["target"]["quantized_method"] == "channel"
    assert r["target"]["mean_values"] == [list(job.preprocess.mean)]
    # The simulator's INT8 outputs went through the same fidelity code as ONNX Runtime's.
    acc = r["accuracy"]
    assert acc["labeled_images"] == r["eval"]["images_used"] == 60
    assert acc["int8"]["top1"] >= acc["fp32"]["top1"] - 0.05
    assert r["agreement"]["top1"] >= 0.9
    assert r["outputs"][0]["sqnr_db"] > 15
    assert r["fp32"]["latency_ms"] is None and any("without a board" in w for w in texts(r["warnings"]))
    rows = r["per_layer"]
    assert rows and all(x["kind"] == "activation" for x in rows)
    assert any(x["sqnr_db"] is not None and x["cosine"] is not None for x in rows)
    assert any(e.log for e in events)  # the toolkit's log reached the app
    assert sorted(os.listdir(".")) == []  # the toolkit's ./snapshot and friends stayed in the temp folder
    assert leftovers(private_temp) == []
    assert sorted(p.name for p in out.iterdir()) == ["demo.report.json", "demo.rknn", "demo_board.py"]


@pytest.mark.rknn
def test_cancel_during_the_build_ends_the_worker_within_a_second(tmp_path, private_temp):
    need_toolkit()
    out = tmp_path / "out"
    out.mkdir()
    job = demo_rknn_job(out, method="mse")  # mmse runs for minutes, in a thread that swallows exceptions
    cancel = CancelToken()
    building = threading.Event()
    box: dict = {}

    def progress(e):
        if e.stage == QUANTIZE and "RKNN build" in e.message and not e.log:
            building.set()

    def work():
        try:
            quantize(job, progress, cancel)
        except BaseException as exc:  # noqa: BLE001
            box["exc"], box["t"] = exc, time.monotonic()

    t = threading.Thread(target=work)
    t.start()
    assert building.wait(300), "the build never started"
    workers = _worker_pids(private_temp)
    assert workers, "no worker process found"
    t0 = time.monotonic()
    cancel.cancel()
    t.join(30)
    assert isinstance(box.get("exc"), Cancelled)
    assert box["t"] - t0 < 1.0
    assert not any(_running(pid) for pid in workers)
    assert list(out.iterdir()) == []
    assert leftovers(private_temp) == []
    assert os.listdir(".") == []


def _worker_pids(temp: Path) -> list[int]:
    """Worker processes whose working directory is in ``temp``."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            if b"rknn_worker.py" in cmd and cwd.startswith(str(temp)):
                pids.append(int(entry))
    return pids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---------------------------------------------------------------- the app's side, no toolkit needed


@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(layout="nchw", size=(224, 224)),  # shorter side 256, crop (the small photo grows first)
        PreprocessSpec(layout="nchw", size=(30, 36), resize="shorter", resize_shorter=40, interpolation="bicubic"),
        PreprocessSpec(layout="nhwc", size=(32, 48), resize="letterbox", pad_value=114, color="bgr",
                       mean=(103.9, 116.8, 123.7), std=(1, 1, 1)),
        PreprocessSpec(layout="nchw", size=(20, 20), resize="stretch", interpolation="nearest"),
        PreprocessSpec(layout="nchw", size=(28, 28), resize="stretch", color="gray", mean=(0,), std=(255,)),
    ],
)
def test_the_board_snippet_feeds_the_pixels_the_app_checked(tmp_path, spec):
    files = image_folder(tmp_path / "img", 3, size=(61, 47))
    rgba = tmp_path / "img" / "alpha.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 4), dtype=np.uint8), "RGBA").save(rgba)
    rotated = tmp_path / "img" / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.open(files[0]).convert("RGB").save(rotated, exif=exif)
    job = Job(Path("m.onnx"), target=TargetSettings(kind="rknn"))
    text = board_snippet(job, "rk3588", spec, TaskGuess("classification", "test"), "m.rknn")
    namespace: dict = {"__name__": "board", "__file__": str(tmp_path / "m_board.py")}
    exec(compile(text, "m_board.py", "exec"), namespace)  # noqa: S102 - our own generated code
    assert namespace["MODEL"] == str(tmp_path / "m.rknn")
    for path in [*files, rgba, rotated]:
        board = namespace["load_image"](str(path))
        assert board.dtype == np.uint8 and board.shape == (1, *spec.size, spec.channels)
        np.testing.assert_array_equal(board[0], model_pixels(open_rgb(path), spec))


def test_calibration_pngs_are_rgb_and_the_toolkit_swaps_them_for_bgr(tmp_path):
    spec = PreprocessSpec(layout="nchw", size=(16, 16), resize="stretch", color="bgr", mean=(1, 2, 3), std=(1, 1, 1))
    image_folder(tmp_path / "img", 1, size=(16, 16))
    src = next((tmp_path / "img").iterdir())
    pixels = model_pixels(open_rgb(src), spec)  # model order: blue first
    rknn_files.write_png(pixels, spec, tmp_path / "c.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png")), pixels[:, :, ::-1])
    job = Job(Path("m.onnx"), preprocess=spec, target=TargetSettings(kind="rknn"))
    cfg = rknn.toolkit_config(job, RknnOptions(), spec)
    assert cfg["quant_img_RGB2BGR"] is True and cfg["mean_values"] == [[1.0, 2.0, 3.0]]


ANALYSIS = """\
layer_name                                         simulator_error
                                               entire              single
                                            cos      euc        cos      euc
----------------------------------------------------------------------------------
[Input] input                             1.00000 | 0.00000   1.00000 | 0.00000
[Conv] /0/Conv_output_0
[Relu] /2/Relu_output_0                   0.99982 | 4.34055   0.99990 | 2.16642
[exDataConvert] logits                    0.99987 | 0.20859   1.00000 | 0.03490
"""


def test_accuracy_analysis_table_is_read():
    rows = {r["name"]: r for r in parse_error_analysis(ANALYSIS)}
    assert list(rows) == ["input", "/0/Conv_output_0", "/2/Relu_output_0", "logits"]
    assert rows["/0/Conv_output_0"]["cosine"] is None  # fused into the ReLU: no values
    relu = rows["/2/Relu_output_0"]
    assert (relu["op_type"], relu["cosine"], relu["euclidean"], relu["cosine_single"]) == ("Relu", 0.99982, 4.34055, 0.9999)


def test_an_nhwc_model_gets_an_nchw_input_for_the_toolkit(tmp_path):
    """RKNN-Toolkit2 reads ONNX inputs as NCHW: the model it gets computes the
    same outputs from the transposed input, and the input model is untouched."""
    import onnxruntime as ort

    from builders import convnet
    from conftest import sha256
    from guiapp.core.model.modelinfo import inspect_model

    src = tmp_path / "nhwc.onnx"
    convnet(src, layout="nhwc", hw=(24, 20))
    before = sha256(src)
    info = inspect_model(src)
    assert info.image_input.layout == "nhwc"
    front = rknn_files.nchw_front(src, info, tmp_path)
    assert sha256(src) == before
    x = np.random.default_rng(0).standard_normal((2, 24, 20, 3)).astype(np.float32)
    want = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    got = ort.InferenceSession(str(front), providers=["CPUExecutionProvider"]).run(None, {"image": x.transpose(0, 3, 1, 2)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert inspect_model(front).image_input.layout == "nchw"
