"""Hostile and odd models, through core and the command line: each ends in a
correct result or a clear, specific message (exit 2), and the input file is
byte-identical afterwards."""

from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

import corpus
from builders import image_folder
from conftest import sha256
from guiapp.cli import main
from guiapp.core.errors import ModelError
from guiapp.core.model.modelinfo import inspect_model


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    image_folder(d, 12, size=(40, 36))
    return d


# name, builder, extra CLI flags, exit code, words the last stderr line (or stdout) must hold
CASES = [
    ("0-byte file", corpus.empty_file, [], 2, ["empty (0 bytes)"]),
    ("random bytes", corpus.random_bytes, [], 2, ["random.onnx"]),
    ("truncated model", corpus.truncated, [], 2, ["truncated"]),
    ("text file renamed .onnx", corpus.text_renamed, [], 2, ["not a valid ONNX model"]),
    ("dynamically quantized (ConvInteger)", corpus.dynamic_quantized, [], 2, ["already quantized", "ConvInteger"]),
    ("opset 8", corpus.opset8, ["--preset", "unit", "--resize", "stretch"], 0, ["Wrote"]),
    ("batch fixed to 1", corpus.fixed_batch, [], 0, ["Wrote"]),
    ("NHWC input", corpus.nhwc, [], 0, ["Wrote"]),
    ("two inputs, no value given", corpus.two_inputs, [], 2, ["needs scale [N, 1] float32", "--input-value"]),
    ("two inputs, value given", corpus.two_inputs, ["--input-value", "scale=0.5"], 0, ["Wrote"]),
    ("no image-like input", corpus.no_image_input, [], 2, ["No input looks like an image", "features [N, 64]"]),
    ("dynamic H and W, no size", corpus.dynamic_hw, [], 2, ["dynamic", "--size"]),
    ("dynamic H and W, size given", corpus.dynamic_hw, ["--size", "32x40"], 0, ["Wrote"]),
    ("weights as Constant nodes", corpus.constant_weights, [], 0, ["Wrote"]),
    ("declared output shape wrong", corpus.wrong_output_shape, [], 0, ["declared [N, 7]", "computes [4, 4]"]),
    ("float16 model", corpus.float16, [], 2, ["float16", "float32 first"]),
    ("symbolic shape inference fails", corpus.symbolic_inference_fails, [], 0, ["Wrote"]),
    ("PaddlePaddle dims -1, unused domain", corpus.paddle_style, [], 0, ["Wrote"]),
    ("external data beside the model", corpus.external_data, [], 0, ["Wrote"]),
    ("external data ../ outside its folder", corpus.external_parent_escape, [], 2, ["outside the model's folder", "refused"]),
    ("external data at an absolute path", corpus.external_absolute, [], 2, ["outside the model's folder", "refused"]),
    ("external data through a symlink out", corpus.external_symlink, [], 2, ["link leading outside", "refused"]),
    ("over 2 GB of external data", corpus.over_2gb, [], 2, ["over 2 GB are not supported"]),
]


@pytest.mark.parametrize("name, build, flags, code, words", CASES, ids=[c[0] for c in CASES])
def test_model_corpus_through_the_cli(tmp_path, capsys, calib, name, build, flags, code, words, monkeypatch):
    import onnx.external_data_helper as edh

    model = build(tmp_path)
    workdir = tmp_path / "cwd"  # nothing may be written to the working directory
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    before = {p: sha256(p) for p in model.parent.iterdir() if p.is_file()}
    real_load = edh.load_external_data_for_model

    def guarded(m, base_dir):  # refusals must come before any external byte is read
        assert code == 0, f"{name}: external data read although the model is refused"
        return real_load(m, base_dir)

    monkeypatch.setattr(edh, "load_external_data_for_model", guarded)
    out = tmp_path / "out" / "o.onnx"
    out.parent.mkdir()
    argv = ["quantize", str(model), "--calib", str(calib), "--out", str(out), "--max-images", "8", "--latency-runs", "3",
            "--eval-max-images", "8", *flags]
    got = main(argv)
    stdout, stderr = capsys.readouterr()
    shown = (stderr.strip().splitlines() or [""])[-1] if code else stdout + stderr
    assert got == code, (name, stderr[-800:])
    assert "Traceback" not in stderr
    for w in words:
        assert w in shown, (name, w, shown)
    if code == 0:
        assert inspect_model(out).is_quantized
    else:
        assert list(out.parent.iterdir()) == []  # nothing written
    assert {p: sha256(p) for p in before} == before  # the input is untouched
    assert list(workdir.iterdir()) == [], (name, list(workdir.iterdir()))


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
def test_already_quantized_models_are_refused_by_name(tmp_path, calib, capsys, fmt):
    q = corpus.quantized(tmp_path, fmt, calib)
    info = inspect_model(q)
    assert info.is_quantized and "already quantized" in info.blockers[0]
    assert main(["quantize", str(q), "--calib", str(calib), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already quantized" in capsys.readouterr().err


def test_weights_in_constants_end_up_int8(tmp_path, calib):
    from guiapp.core import run as pipeline
    from guiapp.core.job import CalibrationSettings, EvalSettings, Job
    from guiapp.core.data.preprocess import preset

    model = corpus.constant_weights(tmp_path)
    job = Job(model, tmp_path / "o.onnx", preset("imagenet", resize="stretch"), CalibrationSettings(folders=(calib,), max_images=4),
              evaluation=EvalSettings(latency_runs=1, max_images=2, per_layer_images=0))
    r = pipeline.quantize(job).report
    assert r["int8"]["size_bytes"] < 0.4 * r["fp32"]["size_bytes"]
    assert sum(t.data_type == onnx.TensorProto.INT8 for t in onnx.load(str(tmp_path / "o.onnx")).graph.initializer) >= 3


def test_over_2gb_is_refused_without_reading_it(tmp_path):
    """In a fresh process: the refusal costs no memory (the weights are never read)."""
    model = corpus.over_2gb(tmp_path)
    code = (
        "import resource, sys\n"
        "from guiapp.cli import main\n"
        f"rc = main(['inspect', {str(model)!r}])\n"
        # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork/exec)
        "print('RSS_MB', int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024)\n"
        "sys.exit(rc)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0  # inspect reports it; quantize refuses (see the corpus)
    assert "over 2 GB are not supported" in r.stdout
    rss = int(r.stdout.split("RSS_MB")[1].split()[0])
    assert rss < 400, rss


def test_model_files_that_are_not_models_fail_inspection_cleanly(tmp_path):
    for build in (corpus.empty_file, corpus.random_bytes, corpus.truncated, corpus.text_renamed):
        with pytest.raises(ModelError):
            inspect_model(build(tmp_path))


@pytest.mark.parametrize(
    "patch, field",
    [
        ({"bogus": 1}, "job.bogus"),
        ({"calibration": {"max_images": "lots"}}, "job.calibration.max_images"),
        ({"version": 7}, "job.version"),
        ({"model": None}, "job.model"),
        ({"inputs": {"scale": "x"}}, "job.inputs.scale"),
    ],
)
def test_broken_job_files_name_the_field_through_the_cli(tmp_path, capsys, patch, field):
    from guiapp.core.demo import demo_folder

    data = json.loads((demo_folder() / "demo.job.json").read_text())
    data.update(patch)
    if data.get("model") is None:
        data.pop("model", None)
    job = tmp_path / "job.qsjob"
    job.write_text(json.dumps(data))
    assert main(["quantize", "--job", str(job), "--out", str(tmp_path / "o.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert field in err, err
