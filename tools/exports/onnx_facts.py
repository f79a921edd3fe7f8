"""What an exported file declares, and how well it does in FP32 under ONNX
Runtime, measured through the app's own preprocessing.

Needs only numpy, Pillow, onnx, onnxruntime and guiapp (read-only use), so it
runs in the app's venv as well as in the exporters' one:

    .venv/bin/python tools/exports/make_exports.py check
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return ["?"]
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_param"):
            out.append(d.dim_param)
        elif d.HasField("dim_value"):
            out.append(d.dim_value)
        else:
            out.append("?")
    return out


def describe(path: Path) -> dict:
    """Facts as written (no shape inference, no rewriting)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    g = proto.graph
    init_names = {i.name for i in g.initializer}
    external = sorted({e.value for i in g.initializer for e in i.external_data if e.key == "location"})
    ops = Counter(n.op_type if not n.domain else f"{n.domain}::{n.op_type}" for n in g.node)
    used_domains = {n.domain for n in g.node}
    try:
        onnx.checker.check_model(str(path))
        checker = "ok"
    except Exception as e:  # noqa: BLE001 - a fact to record
        checker = f"{type(e).__name__}: {e}"
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "external_data_files": {e: (path.parent / e).stat().st_size for e in external if (path.parent / e).exists()},
        "ir_version": proto.ir_version,
        "opset_import": {(o.domain or "ai.onnx"): o.version for o in proto.opset_import},
        "unused_opset_domains": sorted(o.domain for o in proto.opset_import if o.domain not in used_domains and o.domain),
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "onnx_checker": checker,
        "inputs": [{"name": i.name, "elem_type": i.type.tensor_type.elem_type, "shape": dims(i)} for i in g.input if i.name not in init_names],
        "outputs": [{"name": o.name, "elem_type": o.type.tensor_type.elem_type, "shape": dims(o)} for o in g.output],
        "outputs_after_onnx_shape_inference": _inferred_outputs(proto),
        "metadata_props": {p.key: p.value for p in proto.metadata_props},
        "nodes": len(g.node),
        "op_types": dict(sorted(ops.items())),
        "constant_nodes": ops.get("Constant", 0),
        "initializers": len(g.initializer),
        "graph_value_info": len(g.value_info),
        "parameters": int(sum(int(np.prod(i.dims)) for i in g.initializer)),
    }


def _inferred_outputs(proto) -> list | str:
    """Output shapes as onnx.shape_inference (strict off, data propagation on)
    derives them: where an app reading a shape-inferred copy sees expressions."""
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    del copy.graph.output[:]
    for o in proto.graph.output:  # drop declared output shapes, keep names and types
        copy.graph.output.add(name=o.name).type.tensor_type.elem_type = o.type.tensor_type.elem_type
    try:
        inferred = onnx.shape_inference.infer_shapes(copy, data_prop=True)
    except Exception as e:  # noqa: BLE001 - a fact to record, not to fix
        return f"failed: {e}"
    return [{"name": o.name, "shape": dims(o)} for o in inferred.graph.output]


def printout(path: Path) -> str:
    """The onnx protobuf text of graph inputs, outputs and metadata_props."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    init_names = {i.name for i in proto.graph.initializer}
    parts = [f"# {path.name}: ir_version {proto.ir_version}, opset_import "
             + ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in proto.opset_import)
             + f", producer {proto.producer_name} {proto.producer_version}"]
    for label, items in (("input", [i for i in proto.graph.input if i.name not in init_names]), ("output", proto.graph.output)):
        for v in items:
            parts.append(f"{label} {{\n{_indent(str(v))}}}")
    for p in proto.metadata_props:
        parts.append(f"metadata_props {{\n{_indent(str(p))}}}")
    return "\n".join(parts) + "\n"


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text.strip().splitlines())


def session(path: Path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def smoke(path: Path, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """Run once on random input of ``shape``; the output names and real shapes."""
    s = session(path)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    outs = s.run(None, {s.get_inputs()[0].name: x})
    return [(o.name, tuple(v.shape)) for o, v in zip(s.get_outputs(), outs)]


# ---------------------------------------------------------------- quality


def tensors(files, spec) -> np.ndarray:
    from guiapp.core.data.preprocess import load_tensor

    return np.stack([load_tensor(f, spec) for f in files])


def run_batched(path: Path, x: np.ndarray, batch: int = 16) -> list[np.ndarray]:
    s = session(path)
    name = s.get_inputs()[0].name
    outs = [s.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)]
    return outs


def top1(path: Path, eval_root: Path, labels_csv: Path, spec) -> tuple[float, int]:
    """Top-1 on the images of ``labels_csv`` (file,class_index; files relative to ``eval_root``)."""
    with open(labels_csv, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    files = [eval_root / r["file"] for r in rows]
    labels = np.array([int(r["class_index"]) for r in rows])
    logits = np.concatenate(run_batched(path, tensors(files, spec)))
    return float((logits.argmax(1) == labels).mean()), len(labels)


def map_iou(path: Path, images: list[Path], masks: list[Path], spec, threshold: float, at: str) -> dict:
    """IoU of the thresholded probability map with the true masks.

    ``at="map"``: the true mask is brought to the map's resolution (area
    average, then > 0.5); ``at="source"``: the map is resized (bilinear) back
    to each image's size. Resize policy must be "stretch" for "source".
    """
    from PIL import Image

    probs = np.concatenate(run_batched(path, tensors(images, spec), batch=8))
    inter = union = 0
    per_image = []
    for p, m in zip(probs, masks):
        truth = Image.open(m).convert("L")
        prob = p[0]
        if at == "map":
            t = np.asarray(truth.resize((prob.shape[1], prob.shape[0]), Image.Resampling.BOX), np.float32) / 255 > 0.5
        else:
            t = np.asarray(truth, np.float32) / 255 > 0.5
            prob = np.asarray(Image.fromarray(prob.astype(np.float32)).resize(truth.size, Image.Resampling.BILINEAR))
        pred = prob > threshold
        i, u = int((pred & t).sum()), int((pred | t).sum())
        inter, union = inter + i, union + u
        per_image.append(i / u if u else 1.0)
    return {"iou_total": inter / max(union, 1), "iou_mean_per_image": float(np.mean(per_image)), "images": len(per_image),
            "map_shape": list(probs.shape[1:])}


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores)
    keep = []
    while len(order):
        i = order[0]
        keep.append(i)
        if len(order) == 1:
            break
        rest = order[1:]
        order = rest[_iou_matrix(boxes[i:i + 1], boxes[rest])[0] <= iou]
    return np.array(keep, int)


def yolo_detections(out: np.ndarray, conf: float, iou: float = 0.7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ultralytics-style decoding of one [4+C, A] output: xyxy in model pixels,
    best-class scores over ``conf``, per-class NMS."""
    box, cls = out[:4].T, out[4:].T
    c = cls.argmax(1)
    s = cls[np.arange(len(c)), c]
    ok = s > conf
    box, s, c = box[ok], s[ok], c[ok]
    xyxy = np.concatenate([box[:, :2] - box[:, 2:] / 2, box[:, :2] + box[:, 2:] / 2], 1)
    keep = np.concatenate([np.nonzero(c == k)[0][_nms(xyxy[c == k], s[c == k], iou)] for k in np.unique(c)]) if len(c) else np.array([], int)
    return xyxy[keep], s[keep], c[keep]


def detector_quality(path: Path, images_dir: Path, labels_dir: Path, spec, nc: int) -> dict:
    """mAP@0.5 (all-point interpolation, as VOC2010+/Ultralytics) and the
    count of boxes over 0.25 against the labels, through the app's letterbox."""
    from PIL import Image

    from guiapp.core.data.preprocess import placement

    files = sorted(images_dir.glob("*.jpg"))
    outs = np.concatenate(run_batched(path, tensors(files, spec), batch=8))
    records = {k: [] for k in range(nc)}  # class -> [(score, tp)]
    n_true = Counter()
    over, tp_over = 0, 0
    for f, out in zip(files, outs):
        w, h = Image.open(f).size
        gt = np.loadtxt(labels_dir / (f.stem + ".txt"), ndmin=2).reshape(-1, 5)
        gt_cls = gt[:, 0].astype(int)
        gt_xyxy = np.stack([(gt[:, 1] - gt[:, 3] / 2) * w, (gt[:, 2] - gt[:, 4] / 2) * h,
                            (gt[:, 1] + gt[:, 3] / 2) * w, (gt[:, 2] + gt[:, 4] / 2) * h], 1)
        gt_model = placement(spec, w, h).boxes_to_model(gt_xyxy)
        n_true.update(gt_cls.tolist())
        boxes, scores, classes = yolo_detections(out, conf=0.001)
        order = np.argsort(-scores)
        used = np.zeros(len(gt_cls), bool)
        for i in order:
            cand = np.nonzero((gt_cls == classes[i]) & ~used)[0]
            tp = False
            if len(cand):
                ious = _iou_matrix(boxes[i:i + 1], gt_model[cand])[0]
                j = int(ious.argmax())
                if ious[j] >= 0.5:
                    used[cand[j]] = tp = True
            records[int(classes[i])].append((float(scores[i]), tp))
            if scores[i] > 0.25:
                over += 1
                tp_over += tp
    aps = []
    for k in range(nc):
        if n_true[k] == 0:
            continue
        r = sorted(records[k], key=lambda t: -t[0])
        tps = np.cumsum([t for _, t in r]) if r else np.zeros(0)
        recall = np.concatenate([[0], tps / n_true[k], [1]])
        precision = np.concatenate([[1], tps / np.arange(1, len(r) + 1), [0]])
        precision = np.flip(np.maximum.accumulate(np.flip(precision)))
        aps.append(float(np.sum((recall[1:] - recall[:-1]) * precision[1:])))
    return {"map50": float(np.mean(aps)), "labels": int(sum(n_true.values())), "boxes_over_0.25": over,
            "true_positives_over_0.25": int(tp_over), "images": len(files)}
