"""Task detection from output shapes, and the box arithmetic and decoding
behind the detection numbers."""

from __future__ import annotations

import numpy as np
import pytest

from task_models import outputs_only
from guiapp.core.errors import JobError
from guiapp.core.model.exporter import read_exporter
from guiapp.core.model.modelinfo import ModelInfo
from guiapp.core.model.tensors import ImageInput, tensor_info
from guiapp.core.tasks import TASKS, detect_task
from guiapp.core.tasks.boxes import Detections, average_precision, iou_matrix, match, nms, to_xyxy
from guiapp.core.tasks.detection_decode import anchor_centres, decode, resolve
from guiapp.core.tasks.detection_layout import DetectionLayout


def info_for(shapes: dict[str, list], hw: int = 32, metadata: dict[str, str] | None = None) -> ModelInfo:
    m = outputs_only(shapes, hw)
    outs = tuple(tensor_info(o) for o in m.graph.output)
    md = dict(metadata or {})
    return ModelInfo(path=None, size_bytes=0, ir_version=8, opset=13, producer="", doc_string="", metadata=md,
                     inputs=(tensor_info(m.graph.input[0]),), outputs=outs,
                     image_input=ImageInput("image", "nchw", 3, hw, hw, "N"), op_counts=(), parameter_count=0,
                     quantized_ops=(), float_only_ops=(), exporter=read_exporter("pytorch", "2.5", md))


@pytest.mark.parametrize(
    "shapes, kind",
    [
        ({"output0": ["N", 84, 8400]}, "detection"),  # YOLOv8, 80 classes
        ({"output0": [1, 25200, 85]}, "detection"),  # YOLOv5 with objectness
        ({"scores": [1, 4420, 2], "boxes": [1, 4420, 4]}, "detection"),  # UltraFace
        ({"loc": [1, 16800, 4], "conf": [1, 16800, 2], "landms": [1, 16800, 10]}, "detection"),  # RetinaFace
        ({"logits": ["N", 1000]}, "classification"),
        ({"prob": ["N", 1000, 1, 1]}, "classification"),
        ({"maps": ["N", 1, "H", "W"]}, "dense"),  # a text detector with dynamic size
        ({"seg": ["N", 21, 8, 8]}, "dense"),  # per-pixel classes at 1/4 of a 32x32 input
        ({"features": ["N", 512, 1, 2]}, "generic"),
        ({"embedding": ["N", 512, 7, 7]}, "generic"),  # too coarse and too many channels for a mask
        ({"a": ["N", 10], "b": ["N", 3]}, "generic"),
    ],
)
def test_task_is_decided_from_output_shapes(shapes, kind):
    g = detect_task(info_for(shapes))
    assert g.kind == kind
    assert g.reason and not g.chosen_by_user


def test_yolo_layouts_read_rows_or_columns():
    v8 = detect_task(info_for({"output0": ["N", 84, 8400]})).detail
    assert (v8.kind, v8.classes, v8.channels_first, v8.objectness) == ("yolo", 80, True, False)
    v5 = detect_task(info_for({"output0": [1, 25200, 85]})).detail
    assert (v5.classes, v5.channels_first, v5.objectness) == (80, False, True)


def test_per_stride_heads_with_distributions_get_their_strides():
    # PicoDet at 320x320: strides 8, 16, 32, 64 -> 1600, 400, 100, 25 anchors; 80 classes, 4 x 8 bins.
    shapes = {}
    for i, a in enumerate((1600, 400, 100, 25)):
        shapes[f"cls_{i}"] = [1, a, 80]
        shapes[f"reg_{i}"] = [1, a, 32]
    lay = detect_task(info_for(shapes, hw=320)).detail
    assert lay.kind == "strides" and lay.strides == (8, 16, 32, 64)
    assert (lay.bins, lay.classes, lay.anchors_only) == (8, 80, False)
    assert lay.scores[0] == "cls_0" and lay.boxes[0] == "reg_0"


POSE_METADATA = {"author": "Ultralytics", "version": "8.3.40", "task": "pose", "imgsz": "[320, 320]", "stride": "32",
                 "batch": "1", "names": "{0: 'person'}", "kpt_shape": "[17, 3]"}


def test_a_pose_output_with_its_metadata_is_not_read_as_a_52_class_detector():
    g = detect_task(info_for({"output0": [1, 56, 2100]}, hw=320, metadata=POSE_METADATA))
    lay = g.detail
    assert (g.kind, lay.kind, lay.classes, lay.keypoints, lay.head.keypoint_rows) == ("detection", "yolo_pose", 1, (17, 3), slice(5, 56))
    assert g.reason.startswith("task=pose (boxes and keypoints) in the file's metadata")
    assert lay.describe() == "YOLOv8/11 pose head: 1 class, 17 keypoints (x, y, visibility) in output0 [1, 56, 2100]"
    assert g.to_dict()["detection"]["head"]["keypoints"] == [17, 3]
    # Without metadata it stays what it was: 56 rows read as 4 box values and 52 class scores.
    plain = detect_task(info_for({"output0": [1, 56, 2100]}, hw=320)).detail
    assert (plain.kind, plain.classes, plain.keypoints, plain.head) == ("yolo", 52, None, None)
    # A file that says detect, or whose class names do not add up, is read as a plain detector too.
    for said in ({**POSE_METADATA, "task": "detect"}, {**POSE_METADATA, "names": "{0: 'a', 1: 'b'}"}):
        assert detect_task(info_for({"output0": [1, 56, 2100]}, hw=320, metadata=said)).detail.kind == "yolo"


def test_segmentation_pairs_and_centernet_maps_are_detectors():
    seg = detect_task(info_for({"output0": [1, 38, 2100], "output1": [1, 32, 80, 80]}, hw=320)).detail
    assert (seg.kind, seg.classes, seg.head.protos, seg.keypoints) == ("yolo_seg", 2, "output1", None)
    assert "judged by its boxes" in seg.describe()
    face = detect_task(info_for({"537": [1, 1, 16, 16], "538": [1, 2, 16, 16], "539": [1, 2, 16, 16], "540": [1, 10, 16, 16]}, hw=64))
    lay = face.detail
    assert (face.kind, lay.kind, lay.classes, lay.keypoints, lay.centernet.style) == ("detection", "centernet", 1, (5, 2), "centerface")
    assert lay.to_dict()["centernet"]["landmarks"] == "540" and lay.to_dict()["keypoints"] == [5, 2]
    named = detect_task(info_for({"hm": [1, 80, 16, 16], "wh": [1, 2, 16, 16], "reg": [1, 2, 16, 16]}, hw=64)).detail
    assert (named.kind, named.classes, named.keypoints) == ("centernet", 80, None)
    # Per-stride heads are asked before CenterNet: PicoDet's pairs stay "strides".
    shapes = {f"{w}_{i}": [1, 80 if w == "cls" else 32, g, g] for i, g in enumerate((8, 4, 2, 1)) for w in ("cls", "reg")}
    assert detect_task(info_for(shapes, hw=64)).detail.kind == "strides"


def test_pose_rows_are_grouped_for_the_per_part_error():
    g = detect_task(info_for({"output0": [1, 56, 2100]}, hw=320, metadata=POSE_METADATA))
    groups = {label: sl for label, axis, sl in TASKS["detection"].groups(g, "output0", (1, 56, 2100))}
    assert groups == {"box values": slice(0, 4), "class scores (1)": slice(4, 5), "keypoint x (17)": slice(5, 56, 3),
                      "keypoint y (17)": slice(6, 56, 3), "keypoint visibility (17)": slice(7, 56, 3)}
    seg = detect_task(info_for({"output0": [1, 38, 2100], "output1": [1, 32, 80, 80]}, hw=320))
    assert [label for label, _, _ in TASKS["detection"].groups(seg, "output0", (1, 38, 2100))] == [
        "box values", "class scores (2)", "mask coefficients (32)"]
    assert TASKS["detection"].groups(seg, "output1", (1, 32, 80, 80)) == []


def test_user_choice_overrides_and_impossible_choice_is_refused():
    info = info_for({"logits": ["N", 10]})
    assert detect_task(info, "generic").chosen_by_user
    with pytest.raises(JobError, match="do not fit detection"):
        detect_task(info, "detection")


# ---------------------------------------------------------------- boxes


def test_iou_and_formats():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float)
    assert iou_matrix(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0])
    assert to_xyxy(np.array([[5, 5, 10, 4]]), "cxcywh").tolist() == [[0, 3, 10, 7]]
    assert to_xyxy(np.array([[1, 2, 3, 4]]), "xywh").tolist() == [[1, 2, 4, 6]]


def test_nms_is_per_class():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7])
    keep = nms(boxes, scores, np.array([0, 0, 1]), iou=0.5)
    assert keep.tolist() == [0, 2]  # the overlapping box of class 0 goes; class 1 stays


def test_match_pairs_same_class_best_overlap_first():
    ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0.9, 0.8]), np.array([0, 1]))
    got = Detections(np.array([[21, 21, 30, 30], [0, 0, 9, 10], [0, 0, 10, 10]], float), np.array([0.5, 0.6, 0.7]),
                     np.array([1, 0, 1]))
    assert sorted(match(ref, got, 0.5)) == [(0, 1), (1, 0)]


def test_average_precision_by_hand():
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 0]))]
    # Best score is a hit, then a miss, then the second hit: precision 1, then 2/3 at recall 1.
    det = Detections(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], float), np.array([0.9, 0.8, 0.7]),
                     np.array([0, 0, 0]))
    m, per_class = average_precision([det], truth)
    expected = (51 * 1.0 + 50 * (2 / 3)) / 101  # 101 recall points: <= 0.5 at precision 1, the rest at 2/3
    assert m == pytest.approx(expected)
    assert average_precision([Detections.empty()], truth)[0] == 0.0


# ---------------------------------------------------------------- decoding


def test_yolo_decoding_thresholds_and_suppresses():
    lay = DetectionLayout("yolo", ("o",), ("o",), classes=2, channels_first=True)
    rows = np.zeros((1, 6, 3))
    rows[0, :4, 0] = [50, 50, 20, 20]  # cx, cy, w, h
    rows[0, :4, 1] = [51, 50, 20, 20]  # the same object again, weaker
    rows[0, :4, 2] = [10, 10, 4, 4]
    rows[0, 4:, 0] = [0.9, 0.1]
    rows[0, 4:, 1] = [0.6, 0.0]
    rows[0, 4:, 2] = [0.1, 0.3]
    lay = resolve(lay, {"o": rows})
    assert lay.sigmoid is False
    (d,) = decode(lay, {"o": rows}, threshold=0.25, nms_iou=0.45)
    assert d.classes.tolist() == [0, 1] and d.scores.tolist() == [0.9, 0.3]
    assert d.boxes[0].tolist() == [40, 40, 60, 60]


def test_pair_with_softmax_gets_a_background_class():
    lay = DetectionLayout("pair", ("s",), ("b",), classes=2, channels_first=False, box_format="xyxy")
    scores = np.array([[[0.1, 0.9], [0.8, 0.2]]])
    boxes = np.array([[[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]]])
    lay = resolve(lay, {"s": scores, "b": boxes})
    assert lay.background is True
    (d,) = decode(lay, {"s": scores, "b": boxes}, threshold=0.5, nms_iou=0.45)
    assert d.classes.tolist() == [1] and d.boxes.tolist() == [[0.1, 0.1, 0.3, 0.3]]  # background never detected


def test_distribution_boxes_decode_around_anchor_centres():
    lay = DetectionLayout("strides", ("c0", "c1"), ("r0", "r1"), classes=1, channels_first=False, box_format="distribution",
                          bins=4, strides=(8, 16), input_size=(16, 16))
    centres = anchor_centres(16, 16, 8)
    assert centres[:2].tolist() == [[4, 4], [12, 4]]
    r0 = np.full((1, 4, 16), -50.0)  # 4 anchors, 4 sides x 4 bins: one-hot on bin 1 for every side
    r0[..., 1::4] = 50.0
    c0 = np.array([[[5.0], [-5.0], [-5.0], [-5.0]]])  # logits: only anchor 0 is confident
    out = {"c0": c0, "r0": r0, "c1": np.full((1, 1, 1), -5.0), "r1": np.zeros((1, 1, 16))}
    lay = resolve(lay, out)
    assert lay.sigmoid is True
    (d,) = decode(lay, out, threshold=0.5, nms_iou=0.45)
    assert d.boxes.round(3).tolist() == [[-4, -4, 12, 12]]  # centre (4, 4) +- 1 bin x stride 8


def test_undecodable_boxes_compare_anchor_by_anchor():
    lay = DetectionLayout("strides", ("c0",), ("r0",), classes=2, channels_first=False, anchors_only=True, sigmoid=False)
    c0 = np.array([[[0.9, 0.1], [0.2, 0.3], [0.1, 0.8]]])
    (d,) = decode(lay, {"c0": c0, "r0": np.zeros((1, 3, 4))}, threshold=0.25, nms_iou=0.45)
    assert d.boxes[:, 0].tolist() == [0, 1, 2] and d.classes.tolist() == [0, 1, 1]
