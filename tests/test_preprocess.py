"""Preprocessing math against hand-computed values."""

import numpy as np
import pytest
from PIL import Image

from guiapp.core.errors import JobError
from guiapp.core.data.preprocess import PreprocessSpec, load_tensor, matching_preset, prepare, preset

PIXEL = (200, 100, 50)  # R, G, B


def solid(size=(4, 4), color=PIXEL):
    return Image.new("RGB", size, color)


def tensor_of(spec, img=None, layout="nchw", size=(2, 2)):
    return prepare(img or solid(), spec.resolved(layout, size)).tensor


# (200-123.675)/58.395, (100-116.28)/57.12, (50-103.53)/57.375 and so on, by hand.
EXPECTED = {
    "imagenet": (1.3070468, -0.2850140, -0.9329847),
    "unit": (0.7843137, 0.3921569, 0.1960784),
    "pm1": (0.5686275, -0.2156863, -0.6078431),
    "raw": (200.0, 100.0, 50.0),
    # BGR order: B, G, R minus the Caffe means (103.939, 116.779, 123.68)
    "caffe": (-53.939, -16.779, 76.32),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_matches_hand_computed_values(name):
    t = tensor_of(preset(name))
    assert t.shape == (3, 2, 2) and t.dtype == np.float32
    for c, want in enumerate(EXPECTED[name]):
        np.testing.assert_allclose(t[c], want, rtol=1e-5, atol=1e-5)


def test_bgr_reverses_channel_order_before_normalizing():
    spec = PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1), color="bgr")
    np.testing.assert_array_equal(tensor_of(spec)[:, 0, 0], [50, 100, 200])


def test_gray_takes_luminance():
    # ITU-R 601-2: 200*0.299 + 100*0.587 + 50*0.114 = 124.2 -> 124
    spec = preset("raw", channels=1)
    t = tensor_of(spec)
    assert spec.color == "gray" and t.shape == (1, 2, 2)
    np.testing.assert_array_equal(t, 124.0)


def test_gray_preset_uses_one_value_per_setting():
    spec = preset("imagenet", channels=1)
    assert len(spec.mean) == len(spec.std) == 1
    assert spec.mean[0] == pytest.approx((123.675 + 116.28 + 103.53) / 3)


def test_nhwc_has_the_same_values_channels_last():
    spec = preset("imagenet")
    nchw = tensor_of(spec, layout="nchw")
    nhwc = tensor_of(spec, layout="nhwc")
    assert nhwc.shape == (2, 2, 3)
    np.testing.assert_array_equal(nhwc, nchw.transpose(1, 2, 0))


def test_from_unit_converts_torchvision_values_exactly():
    spec = PreprocessSpec.from_unit((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert spec.mean == pytest.approx((123.675, 116.28, 103.53), abs=1e-9)
    assert spec.std == pytest.approx((58.395, 57.12, 57.375), abs=1e-9)
    x = np.array(PIXEL, dtype=np.float64)
    torchvision = (x / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(tensor_of(spec)[:, 0, 0], torchvision, rtol=1e-6)
    assert spec.unit_mean == pytest.approx((0.485, 0.456, 0.406))


def columns_image(width=8, height=4):
    """Column j has value 10*j in every channel: which columns survive is visible."""
    arr = np.repeat((np.arange(width) * 10).astype(np.uint8)[None, :], height, axis=0)
    return Image.fromarray(np.stack([arr] * 3, axis=-1), "RGB")


def raw_spec(**kw):
    return PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest", **kw)


def test_stretch_samples_the_whole_image():
    t = prepare(columns_image(), raw_spec(resize="stretch").resolved("nhwc", (2, 4))).tensor
    # nearest: output column j takes source column floor((j + 0.5) * 8 / 4) = 1, 3, 5, 7
    np.testing.assert_array_equal(t[0, :, 0], [10, 30, 50, 70])


def test_shorter_resizes_then_centre_crops():
    # 8x4 -> shorter side 2 -> 4x2 (source columns 1,3,5,7) -> centre crop 2x2: left = 1
    spec = raw_spec(resize="shorter", resize_shorter=2).resolved("nhwc", (2, 2))
    t = prepare(columns_image(), spec).tensor
    np.testing.assert_array_equal(t[0, :, 0], [30, 50])


def test_shorter_default_is_256_over_224():
    assert preset("imagenet").resolved("nchw", (224, 224)).shorter_side == 256
    assert preset("imagenet").resolved("nchw", (64, 64)).shorter_side == 73


def test_shorter_on_a_tall_image_crops_vertically():
    img = columns_image(8, 4).transpose(Image.Transpose.TRANSPOSE)  # 4 wide, 8 tall: rows carry the values
    spec = raw_spec(resize="shorter", resize_shorter=2).resolved("nhwc", (2, 2))
    t = prepare(img, spec).tensor
    np.testing.assert_array_equal(t[:, 0, 0], [30, 50])


def test_letterbox_keeps_aspect_and_pads():
    # 8x4 into 4x4: scale 0.5 -> 4x2, pasted at row 1; rows 0 and 3 are padding
    spec = raw_spec(resize="letterbox", pad_value=114).resolved("nhwc", (4, 4))
    t = prepare(columns_image(), spec).tensor
    np.testing.assert_array_equal(t[0, :, 0], 114)
    np.testing.assert_array_equal(t[3, :, 0], 114)
    np.testing.assert_array_equal(t[1, :, 0], [10, 30, 50, 70])
    np.testing.assert_array_equal(t[2, :, 0], [10, 30, 50, 70])


def test_model_view_is_what_the_model_sees_before_normalization():
    spec = preset("caffe").resolved("nchw", (2, 2))
    prepared = prepare(solid(), spec)
    np.testing.assert_array_equal(prepared.model_view[0, 0], [50, 100, 200])  # BGR
    assert prepared.source_size == (4, 4)


def test_load_tensor_reads_a_file(tmp_path):
    p = tmp_path / "x.png"
    solid((5, 3)).save(p)
    t = load_tensor(p, preset("unit").resolved("nchw", (2, 2)))
    np.testing.assert_allclose(t[0], 200 / 255, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"std": (58.0, 0.0, 57.0)}, "preprocess.std"),
        ({"mean": (1.0, 2.0), "std": (1.0, 1.0)}, "preprocess.mean"),
        ({"mean": (1.0, 2.0, 3.0), "std": (1.0, 1.0)}, "preprocess.std"),
        ({"color": "gray"}, "preprocess.mean"),
        ({"color": "hsv"}, "preprocess.color"),
        ({"resize": "crop"}, "preprocess.resize"),
        ({"size": (0, 3)}, "preprocess.size"),
    ],
)
def test_invalid_specs_name_the_field(kwargs, field):
    with pytest.raises(JobError) as err:
        PreprocessSpec(**kwargs)
    assert err.value.field == field


def test_dynamic_size_without_a_size_is_refused():
    with pytest.raises(JobError, match="dynamic"):
        preset("unit").resolved("nchw", None)
    assert preset("unit", size=(8, 6)).resolved("nchw", None).size == (8, 6)


def test_matching_preset_recognises_values():
    assert matching_preset(preset("pm1")) == "pm1"
    assert matching_preset(PreprocessSpec.from_unit((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))) == "imagenet"
    assert matching_preset(PreprocessSpec(mean=(1, 2, 3), std=(1, 1, 1))) is None
