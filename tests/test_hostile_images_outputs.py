"""Hostile and odd images, output paths and cancellation, through core and the
command line. Nothing crashes, nothing partial is left, the input is untouched."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import corpus
from builders import convnet, image_folder
from conftest import sha256
from guiapp.cli import main
from guiapp.core import atomic
from guiapp.core.data.dataset import list_images
from guiapp.core.errors import ImageReadError
from guiapp.core.data.imagefile import open_rgb

REASONS = {
    "0-byte": "empty file",
    "truncated JPEG": "truncated",
    "PNG with a bad CRC": "damaged PNG",
    "PNG with damaged pixel data": "damaged",
    "non-image with an image extension": "not an image file",
    "decompression bomb (declared 30000x30000)": "not decoded",
}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def model(tmp_path):
    p = tmp_path / "net.onnx"
    convnet(p)
    return p


def test_bad_images_are_skipped_named_and_not_decoded(tmp_path, model, capsys):
    folder = tmp_path / "calib"
    bad = corpus.bad_images(folder)
    image_folder(folder, 6, seed=2, prefix="good")
    for what, path in bad.items():  # through core
        t = time.perf_counter()
        with pytest.raises(ImageReadError) as err:
            open_rgb(path)
        assert REASONS[what] in err.value.reason, (what, err.value.reason)
        assert time.perf_counter() - t < 5.0  # the bomb is refused, not decoded (decoding 900 MP takes minutes)
    report = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "quantize", model, "--calib", folder, "--out", tmp_path / "o.onnx", "--max-images", "100",
                           "--latency-runs", "3", "--report", report)
    assert code == 0, err
    cal = json.loads(report.read_text())["calibration"]
    assert cal["images_used"] == 6 and cal["images_skipped"] == len(bad)
    skipped = {Path(s["file"]).name: s["reason"] for s in cal["skipped_files"]}
    for what, path in bad.items():
        assert REASONS[what] in skipped[path.name], what


def test_a_folder_of_only_bad_images_is_a_clear_error(tmp_path, model, capsys):
    folder = tmp_path / "bad"
    corpus.bad_images(folder)
    code, _, err = run_cli(capsys, "quantize", model, "--calib", folder, "--out", tmp_path / "o.onnx")
    assert code == 2 and "no readable image" in err and "failed to decode" in err
    assert not (tmp_path / "o.onnx").exists()


def test_odd_but_valid_images_are_all_used_and_decoded_right(tmp_path, model, capsys):
    folder = tmp_path / "odd"
    odd = corpus.odd_good_images(folder)
    expect_rgb = {"CMYK JPEG": (255, 0, 0), "RGBA PNG": (200, 10, 10), "palette PNG": (0, 200, 0), "animated GIF": (250, 0, 0)}
    for what, path in odd.items():
        img = np.asarray(open_rgb(path)).astype(int)
        assert img.ndim == 3 and img.shape[2] == 3, what
        if what in expect_rgb:
            assert np.abs(img[5, 5] - expect_rgb[what]).max() <= 12, (what, img[5, 5])
    assert np.asarray(open_rgb(odd["EXIF-rotated JPEG"])).shape == (40, 20, 3)  # upright
    assert abs(int(np.asarray(open_rgb(odd["16-bit PNG"]))[0, 0, 0]) - round(40000 / 257)) <= 1
    report = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "quantize", model, "--calib", folder, "--out", tmp_path / "o.onnx", "--latency-runs", "3",
                           "--report", report)
    assert code == 0, err
    cal = json.loads(report.read_text())["calibration"]
    assert cal["images_used"] == len(odd) and cal["images_skipped"] == 0


def test_a_file_without_read_permission_is_skipped(tmp_path, model, capsys, monkeypatch):
    folder = tmp_path / "c"
    files = image_folder(folder, 5)
    locked = files[0]
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads anything: make the OS refuse, as it would for a user
        from PIL import Image

        real_open = Image.open

        def refuse(fp, *a, **k):
            if Path(fp) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(fp))
            return real_open(fp, *a, **k)

        monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(ImageReadError, match="permission denied"):
        open_rgb(locked)
    report = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "quantize", model, "--calib", folder, "--out", tmp_path / "o.onnx", "--latency-runs", "3",
                           "--report", report)
    assert code == 0, err
    skipped = json.loads(report.read_text())["calibration"]["skipped_files"]
    assert [Path(s["file"]).name for s in skipped] == [locked.name] and skipped[0]["reason"] == "permission denied"


def test_ten_thousand_images_list_without_decoding_and_with_flat_memory(tmp_path, model, capsys, monkeypatch):
    """Listing opens no image (it only walks folders), so it is fast whatever
    the machine; a run decodes only the images it uses. (Timing itself is for
    bench/, not tests: a loaded machine would fail a time limit.)"""
    from PIL import Image

    root = corpus.many_images(tmp_path, 10_000)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: (opened.append(fp), real_open(fp, *a, **k))[1])
    tracemalloc.start()
    files = list_images([root])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(files) == 10_000
    assert opened == []
    assert peak < 20 * 2**20, peak  # a few MB for 10,000 paths, nothing decoded
    code, _, err = run_cli(capsys, "quantize", model, "--calib", root, "--out", tmp_path / "o.onnx", "--max-images", "16",
                           "--latency-runs", "3", "--eval-max-images", "16")
    assert code == 0, err
    # 16 calibration images, 16 evaluation images, the per-layer ones (among those) and
    # the normalization check's 32 (images can be opened twice: size, then pixels): far from 10,000.
    assert 32 <= len(opened) <= 128, len(opened)


def test_nested_folders_with_symlink_loops(tmp_path, model, capsys):
    root = corpus.nested_with_loop(tmp_path)
    assert len(list_images([root])) == 5
    code, _, err = run_cli(capsys, "quantize", model, "--calib", root, "--out", tmp_path / "o.onnx", "--latency-runs", "3")
    assert code == 0, err


# ------------------------------------------------------------------ outputs


def test_output_equal_to_the_input_in_any_disguise(tmp_path, model, capsys, calib_dir):
    before = sha256(model)
    os.symlink(model, tmp_path / "alias.onnx")
    os.link(model, tmp_path / "hardlink.onnx")
    for out in (model, tmp_path / "alias.onnx", tmp_path / "hardlink.onnx", tmp_path / "sub" / ".." / "net.onnx"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, _, err = run_cli(capsys, "quantize", model, "--calib", calib_dir, "--out", out, "--force")
        assert code == 2 and "is the input model" in err, (out, err)
    assert sha256(model) == before


def test_read_only_output_folder(tmp_path, model, capsys, calib_dir, monkeypatch):
    from guiapp.core import atomic

    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the OS's answer is simulated
        real = os.access
        monkeypatch.setattr(atomic.os, "access", lambda p, m: False if Path(p) == ro else real(p, m))
    else:
        ro.chmod(0o555)
    code, _, err = run_cli(capsys, "quantize", model, "--calib", calib_dir, "--out", ro / "o.onnx")
    assert code == 2 and "not writable" in err
    assert list(ro.iterdir()) == []


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


def test_full_disk_leaves_nothing_behind(tmp_path, calib_dir, capsys, monkeypatch):
    model = tmp_path / "big.onnx"
    convnet(model, width=64)  # ~0.3 MB INT8, more than the disk holds
    disk = tmp_path / "disk"
    real = _tmpfs(disk, "64k")
    try:
        if not real:  # no tmpfs here: the write fails as a full disk would
            def full(src, dst, *a, **k):
                Path(dst).write_bytes(b"x" * 1000)
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(atomic.shutil, "copyfile", full)
        code, _, err = run_cli(capsys, "quantize", model, "--calib", calib_dir, "--out", disk / "o.onnx", "--latency-runs", "3")
        assert code == 2 and "No space left on device" in err, err
        assert list(disk.iterdir()) == []  # no partial file
    finally:
        if real:
            subprocess.run(["umount", str(disk)], check=True)


def test_existing_output_needs_force(tmp_path, model, capsys, calib_dir):
    out = tmp_path / "o.onnx"
    out.write_bytes(b"precious")
    code, _, err = run_cli(capsys, "quantize", model, "--calib", calib_dir, "--out", out, "--latency-runs", "3")
    assert code == 2 and "already exists" in err and "--force" in err and out.read_bytes() == b"precious"
    code, _, _ = run_cli(capsys, "quantize", model, "--calib", calib_dir, "--out", out, "--latency-runs", "3", "--force")
    assert code == 0 and out.read_bytes() != b"precious"


# ------------------------------------------------------------------ cancel at every stage


@pytest.mark.parametrize("stage", ["prepare", "calibrate", "quantize", "evaluate"])
def test_ctrl_c_at_every_stage(tmp_path, stage):
    model = tmp_path / "net.onnx"
    convnet(model, width=32)
    calib = tmp_path / "c"
    image_folder(calib, 120, size=(320, 240), ext=".jpg")
    before = sha256(model)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHONUNBUFFERED="1", TMPDIR=str(tmpdir))
    cmd = [sys.executable, "-m", "guiapp", "quantize", str(model), "--calib", str(calib), "--out", str(out / "o.onnx"),
           "--max-images", "80", "--batch-size", "1", "--eval-max-images", "40", "--latency-runs", "200",
           "--report", str(out / "r.json")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    sent = None
    for line in proc.stderr:
        if line.startswith(stage):
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            break
    rest = proc.stderr.read()
    code = proc.wait(timeout=120)
    stopped_after = time.monotonic() - sent
    assert sent is not None, rest
    assert code == 130, rest
    assert "cancelled" in rest and "Traceback" not in rest
    assert list(out.iterdir()) == []
    # Temporary files gone. ONNX Runtime itself writes a telemetry session id
    # (.ses) into TMPDIR on import, even with ORT_DISABLE_TELEMETRY=1: not ours.
    assert [p.name for p in tmpdir.iterdir() if p.name != ".ses"] == []
    assert sha256(model) == before
    # Stops after the current batch; the bound only catches a run that carries
    # on (a loaded CI machine makes interpreter exit itself take seconds).
    assert stopped_after < 15.0, stopped_after
