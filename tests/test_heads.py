"""More heads, judged as what they are: CenterNet/CenterFace heatmap heads
(layout, boxes, landmarks), keypoint errors between FP32 and INT8, and
Ultralytics pose and segmentation heads recognized for their boxes."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from builders import IR_VERSION, OPSET
from task_models import outputs_only
from guiapp.core.model.exporter import read_exporter
from guiapp.core.model.modelinfo import ImageInput, TensorInfo, tensor_info
from guiapp.core.tasks.boxes import Detections
from guiapp.core.tasks.centernet import CenterNetLayout, cell_predictions, decode, guess, local_maxima, resolve
from guiapp.core.tasks.detection_decode import decode_with_keypoints, resolve as resolve_layout
from guiapp.core.tasks.detection_layout import guess as guess_layout
from guiapp.core.tasks.keypoints import KeypointErrors, pair_distances, summarize
from guiapp.core.tasks.yolo_heads import HeadHints, box_class_rows, hints_from, keypoint_rows_in, pose_keypoints, recognize

HW = 64  # input 64x64 -> maps 16x16 at stride 4
IMAGE = ImageInput("input.1", "nchw", 3, HW, HW, 1)

# Two faces planted in CenterFace's conventions: (cell x, cell y, offset x, offset y, width, height, score, landmarks px)
FACE_A = (5, 7, 0.25, 0.0, 20.0, 24.0, 0.9, [(18, 25), (28, 25), (23, 30), (19, 36), (27, 36)])
FACE_B = (11, 11, 0.0, -0.5, 16.0, 16.0, 0.8, [(42, 40), (50, 40), (46, 44), (43, 48), (49, 48)])
BOX_A = [13.0, 18.0, 33.0, 42.0]  # centre ((5 + 0.25 + 0.5) * 4, (7 + 0 + 0.5) * 4) = (23, 30), 20 x 24
BOX_B = [38.0, 36.0, 54.0, 52.0]  # centre (46, 44), 16 x 16


def ti(name: str, shape) -> TensorInfo:
    return TensorInfo(name, tuple(shape), "float32")


def centerface_maps() -> dict[str, np.ndarray]:
    """Heatmap (with lower neighbours around each peak), log sizes (h, w),
    offsets (y, x) and landmarks (y, x) relative to the box, as CenterFace's demo reads them."""
    g = HW // 4
    heat = np.zeros((1, 1, g, g), np.float32)
    scale = np.full((1, 2, g, g), math.log(4.0), np.float32)
    offset = np.zeros((1, 2, g, g), np.float32)
    lms = np.zeros((1, 10, g, g), np.float32)
    for cx, cy, ox, oy, w, h, score, points in (FACE_A, FACE_B):
        heat[0, 0, cy - 1:cy + 2, cx - 1:cx + 2] = score - 0.4
        heat[0, 0, cy, cx] = score
        scale[0, :, cy, cx] = [math.log(h / 4), math.log(w / 4)]
        offset[0, :, cy, cx] = [oy, ox]
        x1, y1 = (cx + ox + 0.5) * 4 - w / 2, (cy + oy + 0.5) * 4 - h / 2
        for j, (px, py) in enumerate(points):
            lms[0, 2 * j:2 * j + 2, cy, cx] = [(py - y1) / h, (px - x1) / w]
    return {"537": heat, "538": scale, "539": offset, "540": lms}


def centerface_net(maps: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A CenterFace-shaped graph: each output is a planted map plus 0 x the input's mean, so that it runs."""
    nodes = [helper.make_node("ReduceMean", ["input.1"], ["mean"], keepdims=1, name="mean"),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"], name="times_zero")]
    inits = [numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    outs = []
    for name, arr in maps.items():
        inits.append(numpy_helper.from_array(arr, f"planted_{name}"))
        nodes.append(helper.make_node("Add", [f"planted_{name}", "nothing"], [name], name=f"add_{name}"))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    x = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, HW, HW])
    model = helper.make_model(helper.make_graph(nodes, "centerface_like", [x], outs, inits),
                              opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def run(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"input.1": np.random.default_rng(0).random((1, 3, HW, HW), np.float32)})))


# ---------------------------------------------------------------- CenterNet layouts


def test_centerface_layout_is_guessed_from_its_numbered_outputs():
    model = centerface_net(centerface_maps())
    outs = tuple(tensor_info(o) for o in model.graph.output)
    lay, why = guess(outs, IMAGE)
    assert (lay.heatmap, lay.size, lay.offset, lay.landmarks) == ("537", "538", "539", "540")
    assert (lay.classes, lay.keypoints, lay.stride, lay.style) == (1, 5, 4, "centerface")
    assert "channel counts" in why and lay.to_dict()["style"] == "centerface" and "5 landmarks" in lay.describe()


def test_named_centernet_heads_are_read_by_name():
    g = (16, 16)
    lay, _ = guess((ti("hm", (1, 80, *g)), ti("wh", (1, 2, *g)), ti("reg", (1, 2, *g))), IMAGE)
    assert (lay.heatmap, lay.size, lay.offset, lay.landmarks, lay.classes, lay.style) == ("hm", "wh", "reg", None, 80, "centernet")
    # CenterNet multi-pose: keypoint heatmaps and their offsets are left aside; the declared order does not matter.
    pose = (ti("hm", (1, 1, *g)), ti("wh", (1, 2, *g)), ti("hps", (1, 34, *g)), ti("reg", (1, 2, *g)),
            ti("hm_hp", (1, 17, *g)), ti("hp_offset", (1, 2, *g)))
    lay, _ = guess(pose, IMAGE)
    assert (lay.landmarks, lay.keypoints, lay.offset, lay.style) == ("hps", 17, "reg", "centernet")
    # Renamed CenterFace (OpenVINO's names): its "scale" says CenterFace; names work without the input size too.
    named = (ti("heatmap", (1, 1, *g)), ti("scale", (1, 2, *g)), ti("offset", (1, 2, *g)), ti("landmarks", (1, 10, *g)))
    lay, _ = guess(named, None)
    assert (lay.style, lay.stride, lay.keypoints) == ("centerface", None, 5)


@pytest.mark.parametrize("outputs", [
    (ti("seg", (1, 21, 16, 16)),),  # a plain segmentation map
    (ti("output0", (1, 84, 8400)),),  # YOLOv8
    (ti("a", (1, 1, 16, 16)), ti("b", (1, 2, 16, 16))),  # too few maps
    (ti("a", (1, 2, 16, 16)), ti("b", (1, 2, 16, 16)), ti("c", (1, 2, 16, 16))),  # which is the heatmap?
    (ti("a", (1, 10, 16, 16)), ti("b", (1, 2, 16, 16)), ti("c", (1, 2, 16, 16)), ti("d", (1, 10, 16, 16))),  # heatmap or landmarks?
    (ti("a", (1, 1, 64, 64)), ti("b", (1, 2, 64, 64)), ti("c", (1, 2, 64, 64))),  # at the input's size: dense, not centres
    (ti("a", (1, 1, 16, 16)), ti("b", (1, 2, 8, 8)), ti("c", (1, 2, 16, 16))),  # different sizes
    (ti("a", (1, 1, "h", "w")), ti("b", (1, 2, "h", "w")), ti("c", (1, 2, "h", "w"))),  # sizes unknown
    (ti("a", (1, 1, 16, 16)), ti("b", (1, 2, 16, 16)), ti("c", (1, 2, 16, 16)), ti("d", (1, 9, 16, 16))),  # odd landmarks
    (ti("hm", (1, 1, 16, 16)), ti("wh", (1, 2, 16, 16)), ti("hm_offset", (1, 3, 16, 16))),  # a name says offset, 3 channels
])
def test_other_outputs_are_not_centernet(outputs):
    assert guess(outputs, IMAGE) is None


def test_unnamed_maps_need_the_input_size():
    outs = (ti("1", (1, 1, 16, 16)), ti("2", (1, 2, 16, 16)), ti("3", (1, 2, 16, 16)))
    assert guess(outs, IMAGE) is not None
    assert guess(outs, None) is None
    assert guess(outs, ImageInput("x", "nchw", 3, "H", "W", 1)) is None


# ---------------------------------------------------------------- decoding


def test_centerface_run_decodes_the_planted_faces_and_landmarks():
    model = centerface_net(centerface_maps())
    lay = guess(tuple(tensor_info(o) for o in model.graph.output), IMAGE)[0]
    out = run(model)
    lay = resolve(lay, out)
    assert (lay.sigmoid, lay.size_format) == (False, "log")
    (det,), (kps,) = decode(lay, out, threshold=0.3, nms_iou=0.99, input_size=(HW, HW))  # NMS kept loose:
    assert det.scores.tolist() == pytest.approx([0.9, 0.8])  # the neighbours are not peaks
    assert det.boxes.tolist() == [pytest.approx(BOX_A, abs=1e-4), pytest.approx(BOX_B, abs=1e-4)]
    assert kps.shape == (2, 5, 2)
    assert kps[0] == pytest.approx(np.array(FACE_A[7], float), abs=1e-4)
    assert kps[1] == pytest.approx(np.array(FACE_B[7], float), abs=1e-4)
    (high,), _ = decode(lay, out, threshold=0.85, nms_iou=0.45, input_size=(HW, HW))
    assert len(high) == 1


def test_centernet_conventions_logits_map_units_and_keypoints():
    g = 16
    hm = np.full((1, 2, g, g), -5.0)
    hm[0, 1, 9, 5] = 3.0  # class 1 at cell (x 5, y 9)
    wh, reg, hps = np.ones((1, 2, g, g)), np.zeros((1, 2, g, g)), np.zeros((1, 4, g, g))
    wh[0, :, 9, 5] = [3.0, 4.0]  # width, height in map units
    reg[0, :, 9, 5] = [0.25, 0.25]  # x, y
    hps[0, :, 9, 5] = [1.5, -2.0, 0.0, 1.0]  # two keypoints (x, y) from the cell, map units
    out = {"hm": hm, "wh": wh, "reg": reg, "hps": hps}
    lay = resolve(CenterNetLayout("hm", "wh", "reg", "hps", classes=2, keypoints=2, stride=4), out)
    assert (lay.sigmoid, lay.size_format) == (True, "map")
    (det,), (kps,) = decode(lay, out, threshold=0.5, nms_iou=0.45)
    assert det.classes.tolist() == [1] and det.scores[0] == pytest.approx(1 / (1 + math.exp(-3)))
    assert det.boxes[0].tolist() == pytest.approx([15, 29, 27, 45])  # centre (21, 37), 12 x 16
    assert kps[0] == pytest.approx(np.array([[26.0, 28.0], [20.0, 40.0]]))


def test_size_format_is_decided_on_fp32_sizes_unless_chosen():
    hm = np.zeros((1, 1, 8, 8))
    hm[0, 0, 3, 3] = 0.9
    lay = CenterNetLayout("hm", "wh", "reg", stride=4)
    negative = np.full((1, 2, 8, 8), -0.7)  # a linear size is never negative: log sizes
    assert resolve(lay, {"hm": hm, "wh": negative}).size_format == "log"
    huge = np.full((1, 2, 8, 8), 40.0)  # 40 map units = 160 px on a 32 px input: pixels
    assert resolve(lay, {"hm": hm, "wh": huge}, input_size=(32, 32)).size_format == "pixels"
    assert resolve(lay, {"hm": hm, "wh": huge}, input_size=(256, 256)).size_format == "map"
    face = CenterNetLayout("hm", "s", "o", style="centerface", stride=4)
    assert resolve(face, {"hm": hm, "s": np.full((1, 2, 8, 8), 30.0)}).size_format == "map"  # exp(30): not log
    assert resolve(lay, {"hm": hm, "wh": negative}, size_format="pixels").size_format == "pixels"


def test_local_maxima_keep_peaks_only_and_one_cell_of_a_flat_top():
    """A flat top (tied neighbours, as an INT8 heatmap often has) is one
    object: its first cell, not one box per cell."""
    heat = np.zeros((1, 5, 5))
    heat[0, 1, 1] = 0.9
    heat[0, 1, 2] = 0.5
    heat[0, 3, 3] = heat[0, 3, 2] = heat[0, 4, 2] = heat[0, 4, 3] = 0.7
    peaks = np.argwhere(local_maxima(heat) & (heat > 0.1))[:, 1:].tolist()
    assert peaks == [[1, 1], [3, 2]]


# ---------------------------------------------------------------- keypoint errors


def test_keypoint_errors_are_what_was_planted_in_int8():
    model = centerface_net(centerface_maps())
    fp32 = run(model)
    int8 = {k: v.copy() for k, v in fp32.items()}
    cx, cy, *_ = FACE_A
    int8["540"][0, 1::2, cy, cx] += 0.15  # x of every landmark of face A: 0.15 x 20 px = 3 px; face B untouched
    lay = resolve(guess(tuple(tensor_info(o) for o in model.graph.output), IMAGE)[0], fp32)
    (ref,), (ref_kps,) = decode(lay, fp32, 0.3, 0.45, (HW, HW))
    (got,), (got_kps,) = decode(lay, int8, 0.3, 0.45, (HW, HW))
    acc = KeypointErrors()
    assert sorted(acc.add(ref, got, ref_kps, got_kps)) == [(0, 0), (1, 1)]
    r = acc.result()
    assert (r.pairs, r.points) == (2, 10)
    assert (r.mean_px, r.p95_px, r.max_px) == (pytest.approx(1.5, abs=1e-3), pytest.approx(3.0, abs=1e-3), pytest.approx(3.0, abs=1e-3))
    # within 2 px: face B's 5; within 5% of the box's longer side (1.2 px for A, 0.8 px for B): face B's 5
    assert dict(r.pck) == {"2 px": 0.5, "5% of box": 0.5}
    assert r.to_dict()["pck"]["2 px"] == 0.5


def test_keypoint_distances_skip_unmatched_and_unseen_points():
    ref = Detections(np.array([[0, 0, 10, 20], [50, 50, 60, 60]], float), np.array([0.9, 0.8]), np.array([0, 0]))
    got = Detections(np.array([[0, 0, 10, 20]], float), np.array([0.9]), np.array([0]))
    ref_kps = np.array([[[1, 1], [5, 5]], [[55, 55], [56, 56]]], float)
    got_kps = np.array([[[4, 5], [5, 5]]], float)  # first point 5 px away (3-4-5), second exact
    d, sides = pair_distances(ref.boxes, ref_kps, got_kps, [(0, 0)])
    assert d.tolist() == [5.0, 0.0] and sides.tolist() == [20.0, 20.0]
    acc = KeypointErrors()
    assert acc.add(ref, got, ref_kps, got_kps) == [(0, 0)]  # the second FP32 face has no INT8 match: not measured
    assert (acc.result().points, acc.result().mean_px) == (2, 2.5)
    d, _ = pair_distances(ref.boxes, ref_kps, got_kps, [(0, 0)], ref_visible=np.array([[False, True], [True, True]]))
    assert d.tolist() == [0.0]
    s = summarize(np.array([5.0, 0.0]), np.array([20.0, 20.0]), pairs=1, pixels=(2.0, 5.0), fractions=(0.1, 0.25))
    assert dict(s.pck) == {"2 px": 0.5, "5 px": 1.0, "10% of box": 0.5, "25% of box": 1.0}
    empty = KeypointErrors().result()
    assert (empty.points, empty.mean_px, dict(empty.pck)["2 px"]) == (0, None, None)


# ---------------------------------------------------------------- YOLO pose and segmentation

IMAGE640 = ImageInput("images", "nchw", 3, 640, 640, 1)
POSE = (ti("output0", (1, 56, 8400)),)
SEG = (ti("output0", (1, 116, 8400)), ti("output1", (1, 32, 160, 160)))
U = {"author": "Ultralytics", "imgsz": "[640, 640]"}  # what makes the exporter read kpt_shape
ULTRALYTICS_POSE = {"author": "Ultralytics", "version": "8.3.40", "task": "pose", "imgsz": "[640, 640]", "stride": "32",
                    "batch": "1", "names": "{0: 'person'}", "kpt_shape": "[17, 3]"}


def hints(metadata: dict[str, str]) -> HeadHints:
    """What a file with this metadata tells (as detection's guess reads it: the exporter's facts and the task word)."""
    return hints_from(read_exporter("pytorch", "2.5", metadata), metadata)


def pose_values(classes: int = 1, points: int = 17, dims: int = 3, anchors: int = 8400) -> np.ndarray:
    rng = np.random.default_rng(1)
    v = np.empty((1, 4 + classes + points * dims, anchors))
    v[:, :4] = rng.uniform(0, 640, (1, 4, anchors))
    v[:, 4:4 + classes] = rng.uniform(0, 1, (1, classes, anchors))
    for j in range(points):
        r = 4 + classes + j * dims
        v[:, r:r + 2] = rng.uniform(0, 640, (1, 2, anchors))
        if dims == 3:
            v[:, r + 2] = rng.uniform(0, 1, (1, anchors))
    return v


@pytest.mark.parametrize("metadata", [
    ULTRALYTICS_POSE,
    {k: v for k, v in ULTRALYTICS_POSE.items() if k != "task"},  # no task: the keypoint shape says pose
    {"task": "pose", "names": "{0: 'person'}"},  # 51 trailing rows: 17 x 3 (not a multiple of 2)
])
def test_pose_head_is_recognized_from_its_metadata(metadata):
    head, why = recognize(POSE, IMAGE640, hints(metadata))
    assert (head.task, head.classes, head.trailing, head.keypoints) == ("pose", 1, 51, (17, 3))
    assert head.box_rows == slice(0, 5) and head.keypoint_rows == slice(5, 56) and "17 keypoints" in why


def test_pose_head_without_metadata_needs_its_fp32_values():
    assert recognize(POSE, IMAGE640) is None  # 56 rows could be 52 classes
    head, why = recognize(POSE, IMAGE640, fp32=pose_values())
    assert (head.classes, head.keypoints) == (1, (17, 3)) and "FP32" in why
    assert keypoint_rows_in(pose_values(classes=3, points=5, dims=2)) == (3, (5, 2))
    assert keypoint_rows_in(np.full((1, 56, 100), np.nan)) is None
    detector = np.random.default_rng(2).uniform(0, 1, (1, 56, 8400))
    detector[:, :4] *= 640
    assert recognize(POSE, IMAGE640, fp32=detector) is None  # all score rows in 0..1: a 52-class detector


def test_pose_head_read_through_a_model_file():
    m = outputs_only({"output0": ["batch", 56, 8400]}, hw=640)
    onnx.helper.set_model_props(m, ULTRALYTICS_POSE)
    outs = tuple(tensor_info(o) for o in m.graph.output)
    head, _ = recognize(outs, IMAGE640, hints({p.key: p.value for p in m.metadata_props}))
    assert head.to_dict() == {"task": "pose", "output": "output0", "classes": 1, "trailing": 51, "keypoints": [17, 3],
                              "protos": None, "shape": ["batch", 56, 8400], "protos_shape": []}


@pytest.mark.parametrize("metadata", [{"task": "segment", "names": str({i: f"c{i}" for i in range(80)})}, {}])
def test_segmentation_head_is_recognized_with_or_without_metadata(metadata):
    head, why = recognize(SEG, IMAGE640, hints(metadata))
    assert (head.task, head.classes, head.trailing, head.protos, head.keypoint_rows) == ("segment", 80, 32, "output1", None)
    assert "prototype masks" in why and "judged by its boxes" in head.describe()
    assert recognize(SEG, None, hints(metadata)) is not None  # the prototypes' size gives the anchors


@pytest.mark.parametrize("outputs, metadata, image", [
    (POSE, {**U, "task": "pose", "kpt_shape": "[17, 3]", "names": "{0: 'a', 1: 'b'}"}, IMAGE640),  # 4 + 2 + 51 != 56
    (POSE, {**U, "task": "detect", "kpt_shape": "[17, 3]"}, IMAGE640),  # the file says detection
    (POSE, {**U, "task": "pose", "kpt_shape": "[17, 3]"}, ImageInput("images", "nchw", 3, 320, 320, 1)),  # 8400 anchors != 320's
    (POSE, {"task": "pose", "names": str({i: f"c{i}" for i in range(46)})}, IMAGE640),  # 6 rows: 3 points x 2 or 2 x 3?
    ((ti("output0", (1, 84, 8400)),), {}, IMAGE640),  # plain YOLOv8
    ((ti("output0", (1, 84, 8400)),), {"task": "detect", "names": "{0: 'a'}"}, IMAGE640),
    ((ti("output0", (1, 36, 8400)), ti("output1", (1, 32, 160, 160))), {}, IMAGE640),  # no class rows left
    ((ti("output0", (1, 116, 8400)), ti("output1", (1, 32, 80, 80))), {}, IMAGE640),  # protos not at 1/4
    (SEG, {"names": "{0: 'a'}"}, IMAGE640),  # 80 classes by shape, 1 by name
    (SEG, {"task": "pose"}, IMAGE640),
    ((ti("output0", (1, 8400, 56)),), {**U, "task": "pose", "kpt_shape": "[17, 3]"}, IMAGE640),  # anchors first: not v8/11
    (POSE, {**U, "task": "pose", "kpt_shape": "[17, 3]", "end2end": "True"}, IMAGE640),  # boxes already filtered
    ((ti("output0", (1, 56, "anchors")),), {**U, "task": "pose", "kpt_shape": "[17, 3]"}, IMAGE640),  # size unknown
])
def test_unsure_or_other_heads_are_not_recognized(outputs, metadata, image):
    assert recognize(outputs, image, hints(metadata)) is None


def test_pose_rows_decode_to_boxes_and_keypoints_in_pixels():
    outputs = (ti("output0", (1, 11, 20)),)
    lay, _ = guess_layout(outputs, None, HeadHints(keypoints=(2, 3)))
    head = lay.head
    out = np.zeros((1, 11, 20))
    out[0, :, 3] = [50, 60, 20, 30, 0.9, 45, 55, 0.9, 55, 65, 0.2]  # box (cx, cy, w, h), score, 2 x (x, y, v)
    out[0, :, 4] = [51, 60, 20, 30, 0.6, 0, 0, 0, 0, 0, 0]  # the same object, weaker: suppressed
    out[0, :, 1] = [10, 10, 4, 4, 0.1, 0, 0, 0, 0, 0, 0]  # under the threshold
    lay = resolve_layout(lay, {"output0": out})
    assert (lay.kind, lay.sigmoid, lay.keypoints) == ("yolo_pose", False, (2, 3))
    (det,), (kps,) = decode_with_keypoints(lay, {"output0": out}, threshold=0.25, nms_iou=0.45)
    assert det.boxes.tolist() == [[40, 45, 60, 75]] and det.scores.tolist() == [0.9]
    assert kps.tolist() == [[[45, 55, 0.9], [55, 65, 0.2]]]
    assert pose_keypoints(head, out).shape == (1, 20, 2, 3)
    assert box_class_rows(head, out).shape == (1, 5, 20)


def test_centernet_cells_give_every_cell_a_box():
    model = centerface_net(centerface_maps())
    out = run(model)
    lay = resolve(guess(tuple(tensor_info(o) for o in model.graph.output), IMAGE)[0], out)
    boxes, scores = cell_predictions(lay, out)
    assert boxes.shape == (1, 16 * 16, 4) and scores.shape == (1, 16 * 16, 1)
    cx, cy, *_ = FACE_A
    assert boxes[0, cy * 16 + cx].tolist() == pytest.approx(BOX_A, abs=1e-4)  # cells run row by row
    assert scores[0, cy * 16 + cx, 0] == pytest.approx(0.9)
