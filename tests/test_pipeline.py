"""Quantize then evaluate, end to end, on models built here."""

import csv

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from builders import convnet, image_folder, opset8_convnet
from conftest import sha256
from guiapp.core.notes import texts
from guiapp.core import run as pipeline
from guiapp.core.quantize import prepare as prepare_module
from guiapp.core.errors import Cancelled, DatasetError, ModelError, OutputError
from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.data.preprocess import load_tensor, preset


def make_job(model, calib, out, **kw):
    evaluation = kw.pop("evaluation", EvalSettings(latency_runs=5, max_images=20))
    return Job(
        model=model,
        output=out,
        preprocess=kw.pop("preprocess", preset("imagenet", resize="stretch")),
        calibration=kw.pop("calibration", CalibrationSettings(folders=(calib,), max_images=12, batch_size=4)),
        quantization=kw.pop("quantization", QuantSettings()),
        evaluation=evaluation,
        **kw,
    )


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


REQUIRED_KEYS = [
    ("fp32", "size_bytes"), ("int8", "size_bytes"), ("fp32", "latency_ms", "median"), ("int8", "latency_ms", "median"),
    ("agreement", "top1"), ("eval", "images_used"), ("calibration", "images_used"), ("calibration", "images_skipped"),
    ("calibration", "seconds"), ("job",),
]


def dig(d, keys):
    for k in keys:
        d = d[k]
    return d


def test_quantize_writes_an_int8_model_and_a_full_report(tmp_path, model_path, calib_dir):
    out = tmp_path / "net.int8.onnx"
    before = sha256(model_path)
    result = pipeline.quantize(make_job(model_path, calib_dir, out, report=tmp_path / "r.json"))
    assert sha256(model_path) == before  # the input is never modified
    info = inspect_model(out)
    assert {"QuantizeLinear", "DequantizeLinear"} <= set(info.quantized_ops)
    r = result.report
    for keys in REQUIRED_KEYS:
        assert dig(r, keys) is not None, keys
    assert r["calibration"]["images_used"] == 12
    assert r["eval"]["images_used"] == 12  # the 24 images minus the 12 used for calibration
    assert r["eval"]["excluded_calibration_overlap"] == 12
    assert r["int8"]["size_bytes"] == out.stat().st_size
    assert 0.0 <= r["agreement"]["top1"] <= 1.0
    assert r["outputs"][0]["sqnr_db"] > 10 and r["outputs"][0]["cosine"] > 0.9
    assert r["job"]["model"] == str(model_path)
    assert (tmp_path / "r.json").is_file()


def test_output_keeps_metadata_producer_and_doc_strings(tmp_path, model_path, calib_dir):
    out = tmp_path / "o.onnx"
    pipeline.quantize(make_job(model_path, calib_dir, out))
    src, dst = onnx.load(str(model_path)), onnx.load(str(out))
    assert {p.key: p.value for p in dst.metadata_props} == {p.key: p.value for p in src.metadata_props}
    assert (dst.producer_name, dst.producer_version) == ("tests", "1.2")
    assert dst.doc_string == "model doc" and dst.graph.doc_string == "graph doc"


def _labels_csv(path, model, files, offset=0):
    """Labels = the FP32 model's own predictions, so FP32 top-1 must be exactly 1."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    spec = preset("imagenet", resize="stretch").resolved("nchw", (32, 32))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "class_index"])
        for f in files:
            logits = sess.run(None, {"image": load_tensor(f, spec)[None]})[0]
            w.writerow([f.name, int(logits.argmax()) - offset])


@pytest.mark.parametrize("offset", [0, 1])
def test_accuracy_with_labels_and_class_offset(tmp_path, model_path, calib_dir, offset):
    evald = tmp_path / "eval"
    files = image_folder(evald, 10, seed=7)
    _labels_csv(tmp_path / "labels.csv", model_path, files, offset)
    ev = EvalSettings(folders=(evald,), labels_from="csv", labels_csv=tmp_path / "labels.csv", class_offset=offset, latency_runs=5)
    r = pipeline.quantize(make_job(model_path, calib_dir, tmp_path / "o.onnx", evaluation=ev)).report
    acc = r["accuracy"]
    assert acc["labeled_images"] == 10
    assert acc["fp32"]["top1"] == 1.0 and acc["fp32"]["top5"] == 1.0
    assert acc["int8"]["top1"] == pytest.approx(r["agreement"]["top1"])


def test_constant_node_weights_are_quantized_too(tmp_path, calib_dir):
    as_inits, as_consts = tmp_path / "i.onnx", tmp_path / "c.onnx"
    convnet(as_inits, width=32)
    convnet(as_consts, width=32, constant_weights=True)
    r_i = pipeline.quantize(make_job(as_inits, calib_dir, tmp_path / "i8.onnx")).report
    r_c = pipeline.quantize(make_job(as_consts, calib_dir, tmp_path / "c8.onnx")).report
    assert r_c["int8"]["size_bytes"] < 0.4 * r_c["fp32"]["size_bytes"]
    assert abs(r_c["int8"]["size_bytes"] - r_i["int8"]["size_bytes"]) < 512
    assert any("Constant" in step for step in r_c["preparation"])
    int8_weights = [t for t in onnx.load(str(tmp_path / "c8.onnx")).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 3  # both convs and the Gemm


def test_fixed_batch_opset8_gray_model(tmp_path):
    model = tmp_path / "old.onnx"
    opset8_convnet(model)
    calib = tmp_path / "digits"
    image_folder(calib, 10, size=(20, 20))
    job = make_job(model, calib, tmp_path / "old.int8.onnx", preprocess=preset("unit", channels=1, resize="stretch"))
    r = pipeline.quantize(job).report
    assert r["calibration"]["batch_size"] == 1
    assert any("opset 8 -> 13" in s for s in r["preparation"])
    assert inspect_model(tmp_path / "old.int8.onnx").opset >= 13


def test_nhwc_model(tmp_path, calib_dir):
    model = tmp_path / "nhwc.onnx"
    convnet(model, layout="nhwc")
    r = pipeline.quantize(make_job(model, calib_dir, tmp_path / "nhwc.int8.onnx")).report
    assert r["preprocess"]["layout"] == "nhwc" and r["agreement"]["top1"] is not None


def test_cancel_during_calibration_writes_nothing(tmp_path, model_path, calib_dir):
    from guiapp.core.progress import CALIBRATE, CancelToken

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    token = CancelToken()

    def progress(event):
        if event.stage == CALIBRATE and event.done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        pipeline.quantize(make_job(model_path, calib_dir, out_dir / "o.onnx", report=out_dir / "r.json"), progress, token)
    assert listing(out_dir) == []


@pytest.mark.parametrize("stage", ["prepare", "quantize", "evaluate"])
def test_cancel_at_other_stages_writes_nothing(tmp_path, model_path, calib_dir, stage):
    from guiapp.core.progress import CancelToken

    token = CancelToken()

    def progress(event):
        if event.stage == stage:
            token.cancel()

    with pytest.raises(Cancelled):
        pipeline.quantize(make_job(model_path, calib_dir, tmp_path / "o.onnx"), progress, token)
    assert not (tmp_path / "o.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_quantizer_failure_leaves_no_output(tmp_path, model_path, calib_dir, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("synthetic failure")

    monkeypatch.setattr(prepare_module, "quantize_with_ranges", boom)
    with pytest.raises(ModelError, match="synthetic failure"):
        pipeline.quantize(make_job(model_path, calib_dir, tmp_path / "o.onnx"))
    assert listing(tmp_path) == ["calib", "net.onnx"]


def test_unreadable_calibration_images_are_skipped_and_named(tmp_path, model_path, calib_dir):
    (calib_dir / "000_broken.png").write_bytes(b"not a png")
    job = make_job(model_path, calib_dir, tmp_path / "o.onnx", calibration=CalibrationSettings(folders=(calib_dir,), max_images=100))
    r = pipeline.quantize(job).report
    assert r["calibration"]["images_used"] == 24
    assert r["calibration"]["images_skipped"] == 1
    assert r["calibration"]["skipped_files"][0]["file"].endswith("000_broken.png")


def test_no_readable_calibration_image_is_fatal(tmp_path, model_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="no readable image"):
        pipeline.quantize(make_job(model_path, bad, tmp_path / "o.onnx"))
    assert not (tmp_path / "o.onnx").exists()


def test_existing_output_needs_overwrite(tmp_path, model_path, calib_dir):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        pipeline.quantize(make_job(model_path, calib_dir, out))
    assert out.read_bytes() == b"old"
    pipeline.quantize(make_job(model_path, calib_dir, out), overwrite=True)
    assert inspect_model(out).is_quantized


def test_output_equal_to_input_is_refused(tmp_path, model_path, calib_dir):
    with pytest.raises(OutputError, match="is the input model"):
        pipeline.quantize(make_job(model_path, calib_dir, model_path), overwrite=True)


def test_per_tensor_qoperator_int8(tmp_path, model_path, calib_dir):
    q = QuantSettings(format="qoperator", per_channel=False, activation_type="int8")
    r = pipeline.quantize(make_job(model_path, calib_dir, tmp_path / "o.onnx", quantization=q)).report
    ops = set(inspect_model(tmp_path / "o.onnx").quantized_ops)
    assert "QLinearConv" in ops
    assert any("int8 activations" in w for w in texts(r["warnings"]))


def test_excluded_node_stays_float(tmp_path, model_path, calib_dir):
    q = QuantSettings(exclude_nodes=("conv2",))
    pipeline.quantize(make_job(model_path, calib_dir, tmp_path / "o.onnx", quantization=q))
    g = onnx.load(str(tmp_path / "o.onnx")).graph
    conv2 = next(n for n in g.node if n.name == "conv2")
    w = next(t for t in g.initializer if t.name == conv2.input[1])
    assert w.data_type == onnx.TensorProto.FLOAT


def test_gemm_bias_of_shape_1_by_n_is_quantized_per_channel(tmp_path, calib_dir):
    # CNTK-style models (mnist.onnx) end in a Gemm whose bias is [1, N]; ONNX
    # Runtime's per-channel bias adjustment fails on those unless flattened.
    m = convnet()
    bf = next(t for t in m.graph.initializer if t.name == "bf")
    bf.dims.insert(0, 1)
    p = tmp_path / "cntk.onnx"
    onnx.save(m, str(p))
    r = pipeline.quantize(make_job(p, calib_dir, tmp_path / "o.onnx")).report
    assert r["agreement"]["top1"] is not None
