"""The command line: bad input exits 2 with one line, nothing written."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from builders import IR_VERSION, convnet, image_folder, opset8_convnet, save
from conftest import sha256
from guiapp.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def quantize_args(model, calib, out, *extra):
    return ["quantize", model, "--calib", calib, "--out", out, "--max-images", "8", "--latency-runs", "3", *extra]


def assert_usage_error(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[-1], (w, lines[-1])


def test_quantize_and_report(tmp_path, capsys, model_path, calib_dir):
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    code, stdout, _ = run(capsys, *quantize_args(model_path, calib_dir, out, "--report", report, "--save-job", tmp_path / "j.json"))
    assert code == 0
    assert "Latency" in stdout and "Size" in stdout
    r = json.loads(report.read_text())
    assert r["calibration"]["images_used"] == 8
    job = json.loads((tmp_path / "j.json").read_text())
    assert job["calibration"]["max_images"] == 8 and job["output"] == "o.onnx"


def test_the_last_line_names_every_file_written_and_the_summary_the_overlap(tmp_path, capsys, model_path, calib_dir):
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    args = quantize_args(model_path, calib_dir, out, "--report", report, "--eval", calib_dir)
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    r = json.loads(report.read_text())
    cache = r["calibration"]["cache"]
    assert cache and os.path.isfile(cache) and not r["calibration"]["cache_used"]
    assert stdout.strip().splitlines()[-1] == f"Wrote {out}, {cache} (calibration cache) and {report}"
    written = {p.name for p in tmp_path.iterdir() if p.is_file()} - {model_path.name}
    assert written == {out.name, report.name, os.path.basename(cache)}  # nothing written goes unnamed
    # the evaluation folder is the calibration folder: the 8 calibration images are left out, and the summary says so
    assert r["eval"]["excluded_calibration_overlap"] == 8 and r["eval"]["images_used"] == 16
    assert "evaluated on 16 (evaluation folders), leaving out 8 images that calibration used." in stdout

    code, stdout, err = run(capsys, *args, "--force", "--no-cache")
    assert code == 0, err
    assert stdout.strip().splitlines()[-1] == f"Wrote {out} and {report}"


def test_a_reused_cache_is_not_reported_as_written(tmp_path, capsys, model_path, calib_dir):
    out = tmp_path / "o.onnx"
    assert run(capsys, *quantize_args(model_path, calib_dir, out))[0] == 0
    code, stdout, err = run(capsys, *quantize_args(model_path, calib_dir, out, "--force", "--format", "qoperator"))
    assert code == 0, err
    assert "statistics from the cache" in stdout
    assert stdout.strip().splitlines()[-1] == f"Wrote {out}"


def test_job_file_with_flag_overrides(tmp_path, capsys, model_path, calib_dir):
    out = tmp_path / "o.onnx"
    assert run(capsys, *quantize_args(model_path, calib_dir, out, "--save-job", tmp_path / "j.json", "--preset", "pm1"))[0] == 0
    out.unlink()
    code, _, err = run(capsys, "quantize", "--job", tmp_path / "j.json", "--per-tensor", "--report", tmp_path / "r.json")
    assert code == 0, err
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["job"]["quantization"]["per_channel"] is False
    assert r["job"]["preprocess"]["mean"] == [127.5] * 3


def test_inspect_text_and_json(capsys, model_path):
    code, out, _ = run(capsys, "inspect", model_path)
    assert code == 0 and "image, NCHW, 3 channel(s), dynamic batch" in out
    code, out, _ = run(capsys, "inspect", model_path, "--json")
    assert json.loads(out)["image_input"]["layout"] == "nchw"


def test_not_a_file(tmp_path, capsys):
    assert_usage_error(*run(capsys, "inspect", tmp_path)[::2], "not a file")
    assert_usage_error(*run(capsys, "inspect", tmp_path / "none.onnx")[::2], "does not exist")


@pytest.mark.parametrize("content, words", [(b"plain text, not a model\n" * 9, ["not a valid ONNX model", "Export it again"])])
def test_not_onnx(tmp_path, capsys, content, words, calib_dir):
    p = tmp_path / "text.onnx"
    p.write_bytes(content)
    out = tmp_path / "o.onnx"
    assert_usage_error(*run(capsys, *quantize_args(p, calib_dir, out))[::2], *words)
    assert not out.exists()


def test_truncated_onnx(tmp_path, capsys, model_path, calib_dir):
    p = tmp_path / "cut.onnx"
    p.write_bytes(model_path.read_bytes()[:-100])
    assert_usage_error(*run(capsys, *quantize_args(p, calib_dir, tmp_path / "o.onnx"))[::2], "cut.onnx")


def test_no_image_input(tmp_path, capsys, calib_dir):
    x = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", 128])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 128])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["tokens"], ["y"])], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = IR_VERSION
    p = save(m, tmp_path / "vec.onnx")
    assert_usage_error(*run(capsys, *quantize_args(p, calib_dir, tmp_path / "o.onnx"))[::2], "No input looks like an image", "tokens")


def test_already_quantized(tmp_path, capsys, model_path, calib_dir):
    q = tmp_path / "q.onnx"
    assert run(capsys, *quantize_args(model_path, calib_dir, q))[0] == 0
    assert_usage_error(*run(capsys, *quantize_args(q, calib_dir, tmp_path / "qq.onnx"))[::2], "already quantized", "original FP32")


def test_opset_too_old_to_upgrade(tmp_path, capsys, calib_dir):
    # Opset 8 with an op the version converter cannot carry to 13 (Upsample
    # became Resize): the refusal names the opset and the fix.
    m = convnet()
    m.graph.node.insert(0, helper.make_node("Upsample", ["image", "scales"], ["up"], mode="nearest"))
    m.graph.node[1].input[0] = "up"
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1, 1, 1, 1], np.float32), "scales"))
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("", 8))
    p = save(m, tmp_path / "old.onnx")
    code, _, err = run(capsys, *quantize_args(p, calib_dir, tmp_path / "o.onnx"))
    assert_usage_error(code, err, "opset 8", "Re-export")


def test_old_opset_that_converts_works(tmp_path, capsys):
    model = tmp_path / "old.onnx"
    opset8_convnet(model)  # also: batch fixed to 1, one gray channel
    calib = tmp_path / "c"
    image_folder(calib, 6, size=(20, 20))
    code, _, err = run(capsys, *quantize_args(model, calib, tmp_path / "o.onnx", "--preset", "unit", "--resize", "stretch"))
    assert code == 0, err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--mean", "1,2"], ["--mean", "2 values", "3 channel"]),
        (["--std", "58,0,57"], ["--std", "channel 1", "non-zero"]),
        (["--mean", "a,b,c"], ["--mean", "comma-separated numbers"]),
        (["--size", "big"], ["--size", "HxW"]),
        (["--color", "gray"], ["preprocess.color", "1 channel", "takes 3"]),
    ],
)
def test_bad_preprocessing(tmp_path, capsys, model_path, calib_dir, flags, words):
    out = tmp_path / "o.onnx"
    assert_usage_error(*run(capsys, *quantize_args(model_path, calib_dir, out, *flags))[::2], *words)
    assert not out.exists()


def test_single_value_mean_applies_to_every_channel(tmp_path, capsys, model_path, calib_dir):
    code, _, err = run(capsys, *quantize_args(model_path, calib_dir, tmp_path / "o.onnx", "--mean", "127.5", "--std", "127.5", "--report", tmp_path / "r.json"))
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["preprocess"]["mean"] == [127.5] * 3


def test_calibration_folder_problems(tmp_path, capsys, model_path):
    out = tmp_path / "o.onnx"
    assert_usage_error(*run(capsys, *quantize_args(model_path, tmp_path / "missing", out))[::2], "does not exist")
    (tmp_path / "empty").mkdir()
    assert_usage_error(*run(capsys, *quantize_args(model_path, tmp_path / "empty", out))[::2], "holds no image files")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"junk")
    assert_usage_error(*run(capsys, *quantize_args(model_path, bad, out))[::2], "no readable image", "a.jpg")
    assert not out.exists()


def test_output_problems(tmp_path, capsys, model_path, calib_dir):
    before = sha256(model_path)
    assert_usage_error(*run(capsys, *quantize_args(model_path, calib_dir, model_path))[::2], "is the input model")
    assert_usage_error(*run(capsys, *quantize_args(model_path, calib_dir, tmp_path / "no" / "o.onnx"))[::2], "does not exist")
    (tmp_path / "file").write_text("x")
    assert_usage_error(*run(capsys, *quantize_args(model_path, calib_dir, tmp_path / "file" / "o.onnx"))[::2], "does not exist")
    existing = tmp_path / "exists.onnx"
    existing.write_bytes(b"keep me")
    assert_usage_error(*run(capsys, *quantize_args(model_path, calib_dir, existing))[::2], "already exists", "--force")
    assert existing.read_bytes() == b"keep me"
    assert sha256(model_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_folder(tmp_path, capsys, model_path, calib_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    assert_usage_error(*run(capsys, *quantize_args(model_path, calib_dir, ro / "o.onnx"))[::2], "not writable")


def test_force_replaces_an_existing_output(tmp_path, capsys, model_path, calib_dir):
    existing = tmp_path / "exists.onnx"
    existing.write_bytes(b"old")
    assert run(capsys, *quantize_args(model_path, calib_dir, existing, "--force"))[0] == 0
    assert existing.read_bytes() != b"old"


def test_usage_errors_exit_2(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as e:
        main(["quantize", "--method", "nonsense"])
    assert e.value.code == 2


def test_ctrl_c_cancels_cleanly(tmp_path, model_path):
    calib = tmp_path / "many"
    image_folder(calib, 150, size=(320, 240), ext=".jpg")
    out = tmp_path / "o.onnx"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "guiapp", *map(str, quantize_args(model_path, calib, out)), "--max-images", "150", "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    for line in proc.stderr:
        if line.startswith("calibrate") and "/150 images" in line and not line.split()[-2].startswith("0/"):
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "cancelled" in rest and "Traceback" not in rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many", "net.onnx"]
