"""Core pieces behind the preview page and the HTML report."""

import numpy as np
import onnx
from onnx import helper, numpy_helper
from PIL import Image

from builders import convnet, save
from guiapp.core.model.modelinfo import inspect_model
from guiapp.core.data.preprocess import PreprocessSpec, prepare, preset
from guiapp.core.data.preview import ResizeCache, build_preview, equivalents, target_range, warnings_for
from guiapp.core.report.html import render_html


def photo(seed=0, size=(64, 48)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def test_preview_is_exactly_cores_preprocessing_and_the_cache_is_transparent():
    img = photo()
    cache = ResizeCache()
    for spec in (preset("imagenet"), preset("caffe"), preset("pm1", resize="letterbox", pad_value=114)):
        spec = spec.resolved("nhwc", (16, 20))
        p = build_preview(img, spec, cache)
        np.testing.assert_array_equal(p.tensor, prepare(img, spec).tensor)
        np.testing.assert_array_equal(p.channels, p.tensor.transpose(2, 0, 1))
        assert [s.name for s in p.stats] == (["B", "G", "R"] if spec.color == "bgr" else ["R", "G", "B"])
        for s, ch in zip(p.stats, p.channels):
            assert (s.min, s.max) == (float(ch.min()), float(ch.max())) and s.counts.sum() == ch.size


def warnings(spec, preset_name, info=None):
    spec = spec.resolved("nchw", (16, 16))
    return warnings_for(build_preview(photo(), spec), spec, preset_name, info)


def test_no_warning_for_right_settings():
    assert warnings(preset("imagenet"), "imagenet") == []
    assert warnings(preset("caffe"), "caffe") == []  # +-150 is Caffe's normal
    assert warnings(preset("unit"), "unit") == []


def test_warnings_in_words_for_wrong_numbers():
    assert any("forget std" in w for w in warnings(preset("raw"), "raw"))
    no_mean = PreprocessSpec(mean=(0, 0, 0), std=(58.395, 57.12, 57.375))
    assert any("zero-centred" in w and "mean" in w for w in warnings(no_mean, "imagenet"))
    swapped = PreprocessSpec(mean=(103.939, 116.779, 123.68), std=(1, 1, 1), color="rgb")
    assert any("channel order is RGB" in w for w in warnings(swapped, "caffe"))
    typo = PreprocessSpec(mean=(123.675, 116.28, 103.53), std=(58.395, 5712.0, 57.375))
    assert any("typo" in w for w in warnings(typo, None))


def test_a_model_that_normalizes_its_input_is_flagged(tmp_path):
    m = convnet()
    m.graph.initializer.extend([numpy_helper.from_array(np.array(127.5, np.float32), "mu"),
                                numpy_helper.from_array(np.array(127.5, np.float32), "sd")])
    m.graph.node.insert(0, helper.make_node("Sub", ["image", "mu"], ["centred"]))
    m.graph.node.insert(1, helper.make_node("Div", ["centred", "sd"], ["scaled"]))
    m.graph.node[2].input[0] = "scaled"
    info = inspect_model(save(m, tmp_path / "norm.onnx"))
    assert info.input_normalization == ("Sub", "Div")
    assert any("normalizes its input itself" in w for w in warnings(preset("imagenet"), "imagenet", info))
    convnet(tmp_path / "plain.onnx")
    assert inspect_model(tmp_path / "plain.onnx").input_normalization == ()


def test_equivalent_settings_for_other_tools():
    e = equivalents(preset("imagenet").resolved("nchw", (224, 224)))
    assert "mean_values=[[123.675, 116.28, 103.53]]" in e["RKNN"] and "std_values=[[58.395, 57.12, 57.375]]" in e["RKNN"]
    assert "T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])" in e["torchvision"]
    assert "T.Resize(256), T.CenterCrop((224, 224))" in e["torchvision"]
    assert "swapRB=True" in e["OpenCV"] and "blob /= np.array([58.395, 57.12, 57.375]" in e["OpenCV"]
    caffe = equivalents(preset("caffe", resize="stretch").resolved("nchw", (224, 224)))
    assert "quant_img_RGB2BGR=True" in caffe["RKNN"] and "swapRB=False" in caffe["OpenCV"]
    assert "scalefactor=1 / 1" in caffe["OpenCV"]


def test_target_range_follows_the_preset():
    spec = preset("unit").resolved("nchw", (8, 8))
    assert target_range(spec, "unit") == (0.0, 1.0)
    assert target_range(spec, "pm1") == (-1.0, 1.0)
    assert target_range(spec, None) == (-1.0, 1.0)


def test_html_report_is_self_contained_and_escaped():
    report = {
        "created": "now", "output": "/x/<m>.onnx", "model": {"path": "/x/m.onnx"},
        "fp32": {"size_bytes": 4_000_000, "latency_ms": {"median": 4.0, "p90": 5.0}},
        "int8": {"size_bytes": 1_000_000, "latency_ms": {"median": 2.0, "p90": 2.5}},
        "accuracy": None, "agreement": {"top1": 0.95}, "outputs": [],
        "per_layer": [{"name": "conv<1>", "kind": "activation", "op_type": "Conv", "sqnr_db": 12.5, "cosine": 0.99}],
        "calibration": {"method": "entropy", "images_used": 10, "images_skipped": 1, "seconds": 1.0, "cache_used": False,
                        "skipped_files": [{"file": "bad.jpg", "reason": "damaged"}]},
        "eval": {"images_used": 5, "source": "x"}, "warnings": [{"code": "x.y", "text": "careful & <slow>"}], "preparation": ["step"], "job": {"a": 1},
    }
    html = render_html(report, {"Size": b"\x89PNG fake"})
    assert "data:image/png;base64," in html and "conv&lt;1&gt;" in html and "careful &amp; &lt;slow&gt;" in html
    assert "bad.jpg" in html and "<script" not in html and "http" not in html


def test_run_summary_counts_only_the_images_calibration_used():
    from guiapp.core.report.summary import run_summary

    cal = {"method": "minmax", "images_used": 12, "images_skipped": 2, "cache_used": False, "cache": None, "seconds": 1.0}
    ev = {"images_used": 10, "source": "calibration folders, images not used for calibration", "excluded_calibration_overlap": 14}
    # evaluation drew on the calibration folders: 14 left out = 12 used + 2 unreadable
    assert "(calibration folders, images not used for calibration), leaving out 12 images that calibration used." in run_summary(
        {"calibration": cal, "eval": ev}
    )
    ev = {"images_used": 20, "source": "evaluation folders", "excluded_calibration_overlap": 1}
    assert "evaluated on 20 (evaluation folders), leaving out 1 image that calibration used." in run_summary({"calibration": cal, "eval": ev})
    ev = {"images_used": 20, "source": "evaluation folders", "excluded_calibration_overlap": 0}
    assert run_summary({"calibration": cal, "eval": ev}).endswith("evaluated on 20 (evaluation folders).")
