"""Build ``resources/detector/``: a small YOLOv8-style detector of our own,
with its calibration and labeled evaluation images.

The head ends exactly as an Ultralytics YOLOv8 export does: per stride (8, 16,
32) a box branch (4 x 8-bin distributions, DFL) and a class branch; in the
graph, the distributions are decoded (Softmax, a fixed 1x1 Conv with weights
0..7, anchor points, stride Mul) into box centre and size in input pixels and
concatenated with the Sigmoid class scores into ONE output ``[N, 4+4, 525]``.
Box values reach 160 while scores stay in 0..1: the case that breaks plain
INT8 quantization (one scale for the whole tensor).

Scenes (tools/scenes.py): 1-5 shapes of four classes (circle, square,
triangle, star) on textured backgrounds, 168-256 px on a side. Training
tensors go through the app's own preprocessing (letterbox to 160x160, pad 114,
x/255) after a JPEG round trip. Seeds fix every random choice.

Writes ``model.onnx``, ``calib/`` (unlabeled), ``eval/images/`` with YOLO labels
in ``eval/labels/``, ``detector.job.json`` and prints FP32 mAP@0.5 on eval/
measured with the app's own code.

    pip install torch==2.13.0
    python tools/make_detector.py          # --out DIR to write elsewhere
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from guiapp.core.data.preprocess import placement, prepare, preset  # noqa: E402
from scenes import CLASSES, jpeg, scene, yolo_lines  # noqa: E402

SIZE = 160
STRIDES = (8, 16, 32)
BINS = 8  # distribution bins per box side (YOLOv8 uses 16 at 640)
NC = len(CLASSES)
JOB_SPEC = preset("unit", 3, resize="letterbox", pad_value=114)
SPEC = JOB_SPEC.resolved("nchw", (SIZE, SIZE))
TRAIN_SEED, VAL_SEED, CALIB_SEED, EVAL_SEED = 11, 12, 13, 14
TRAIN_IMAGES, VAL_IMAGES, CALIB_IMAGES, EVAL_IMAGES = 4000, 300, 100, 100
EPOCHS, BATCH, LR = 24, 32, 2e-3
TOPK = 10  # anchors assigned per object


def cbs(cin: int, cout: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class Detector(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(cbs(3, 16, 3, 2), cbs(16, 24, 3, 2), cbs(24, 24))  # /4
        self.s3 = nn.Sequential(cbs(24, 32, 3, 2), cbs(32, 32))  # /8
        self.s4 = nn.Sequential(cbs(32, 48, 3, 2), cbs(48, 48))  # /16
        self.s5 = nn.Sequential(cbs(48, 64, 3, 2), cbs(64, 64))  # /32
        self.m4 = cbs(64 + 48, 48, 1)
        self.m3 = cbs(48 + 32, 32, 1)
        chans = (32, 48, 64)
        self.box = nn.ModuleList(nn.Sequential(cbs(c, 32), cbs(32, 32), nn.Conv2d(32, 4 * BINS, 1)) for c in chans)
        self.cls = nn.ModuleList(nn.Sequential(cbs(c, 32), cbs(32, 32), nn.Conv2d(32, NC, 1)) for c in chans)
        for head in self.cls:
            nn.init.constant_(head[-1].bias, -4.0)
        self.dfl = nn.Conv2d(BINS, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(BINS, dtype=torch.float32).view(1, BINS, 1, 1)
        points, strides = [], []
        for s in STRIDES:
            g = SIZE // s
            ys, xs = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
            points.append(torch.stack([xs.flatten() + 0.5, ys.flatten() + 0.5], 0))
            strides.append(torch.full((1, g * g), float(s)))
        self.register_buffer("anchors", torch.cat(points, 1).unsqueeze(0))  # [1, 2, A] in grid units
        self.register_buffer("strides", torch.cat(strides, 1).unsqueeze(0))  # [1, 1, A]
        self.export = False

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        p3 = self.s3(self.stem(x))
        p4 = self.s4(p3)
        p5 = self.s5(p4)
        n4 = self.m4(torch.cat([F.interpolate(p5, scale_factor=2.0, mode="nearest"), p4], 1))
        n3 = self.m3(torch.cat([F.interpolate(n4, scale_factor=2.0, mode="nearest"), p3], 1))
        return [torch.cat([b(f), c(f)], 1) for f, b, c in zip((n3, n4, p5), self.box, self.cls)]

    def forward(self, x: torch.Tensor):
        feats = self.levels(x)
        n = x.shape[0]
        xcat = torch.cat([f.view(n, 4 * BINS + NC, -1) for f in feats], 2)  # [N, 4*BINS+NC, A]
        box, cls = xcat.split((4 * BINS, NC), 1)
        if not self.export:
            return box, cls
        a = box.shape[2]
        dist = self.dfl(box.view(n, 4, BINS, a).transpose(2, 1).softmax(1)).view(n, 4, a)  # as Ultralytics' DFL
        lt, rb = dist.chunk(2, 1)
        x1y1, x2y2 = self.anchors - lt, self.anchors + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * self.strides
        return torch.cat((dbox, cls.sigmoid()), 1)


# ---------------------------------------------------------------- data


def render_set(seed: int, count: int):
    rng = np.random.default_rng(seed)
    return [scene(rng) for _ in range(count)]


def to_training(scenes) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """uint8 model views (after a JPEG round trip) and boxes in model pixels."""
    views, boxes, classes = [], [], []
    for s in scenes:
        img = Image.open(io.BytesIO(jpeg(s.image))).convert("RGB")
        views.append(prepare(img, SPEC).model_view)
        boxes.append(placement(SPEC, *img.size).boxes_to_model(s.boxes))
        classes.append(s.classes)
    return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous(), boxes, classes


def assign(model: Detector, gt_boxes: np.ndarray, gt_cls: np.ndarray):
    """Static assignment: per object, the TOPK anchors nearest its centre whose
    centre lies inside it and whose distances fit the bins; an anchor claimed
    twice goes to the smaller object. Returns (anchor idx, ltrb in stride units, class)."""
    pts = (model.anchors[0] * model.strides[0]).T.numpy()  # [A, 2] pixels
    st = model.strides[0, 0].numpy()
    owner = np.full(len(pts), -1)
    owner_area = np.full(len(pts), np.inf)
    for k, (b, c) in enumerate(zip(gt_boxes, gt_cls)):
        ltrb = np.stack([pts[:, 0] - b[0], pts[:, 1] - b[1], b[2] - pts[:, 0], b[3] - pts[:, 1]], 1) / st[:, None]
        ok = (ltrb.min(1) > 0.01) & (ltrb.max(1) < BINS - 1.01)
        centre = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        d = np.linalg.norm(pts - centre, axis=1) / np.sqrt(st)
        cand = np.nonzero(ok)[0]
        if len(cand) == 0:
            continue
        cand = cand[np.argsort(d[cand])[:TOPK]]
        area = (b[2] - b[0]) * (b[3] - b[1])
        better = owner_area[cand] > area
        owner[cand[better]] = k
        owner_area[cand[better]] = area
    idx = np.nonzero(owner >= 0)[0]
    ks = owner[idx]
    b = gt_boxes[ks]
    p = pts[idx]
    ltrb = np.stack([p[:, 0] - b[:, 0], p[:, 1] - b[:, 1], b[:, 2] - p[:, 0], b[:, 3] - p[:, 1]], 1) / st[idx, None]
    return idx, ltrb, gt_cls[ks], b


def losses(model: Detector, box: torch.Tensor, cls: torch.Tensor, targets) -> torch.Tensor:
    n, _, a = box.shape
    cls_t = torch.zeros(n, NC, a)
    dfl_terms, iou_terms = [], []
    for i, (idx, ltrb, c, gtb) in enumerate(targets):
        if len(idx) == 0:
            continue
        idx_t = torch.from_numpy(idx)
        logits = box[i, :, idx_t].T.reshape(-1, 4, BINS)  # [P, 4, BINS]
        t = torch.from_numpy(ltrb).float().clamp(0, BINS - 1.01)
        tl = t.floor().long()
        wl = (tl + 1).float() - t
        logp = logits.log_softmax(-1)
        dfl = -(logp.gather(-1, tl[..., None]).squeeze(-1) * wl + logp.gather(-1, (tl + 1)[..., None]).squeeze(-1) * (1 - wl))
        dfl_terms.append(dfl.mean(-1))
        pred = (logp.exp() * torch.arange(BINS)).sum(-1)  # [P, 4] stride units
        lt_p, rb_p = pred[:, :2], pred[:, 2:]
        lt_t, rb_t = t[:, :2], t[:, 2:]
        inter = (torch.min(lt_p, lt_t) + torch.min(rb_p, rb_t)).prod(1)
        union = (lt_p + rb_p).prod(1) + (lt_t + rb_t).prod(1) - inter
        iou = inter / union.clamp(min=1e-6)
        iou_terms.append(1 - iou)
        # IoU-aware class targets (as YOLOv8's task-aligned assigner gives): scores rank boxes.
        cls_t[i, torch.from_numpy(c), idx_t] = iou.detach().clamp(0.2, 1.0)
    pos = max(1, sum(len(t[0]) for t in targets))
    l_cls = F.binary_cross_entropy_with_logits(cls, cls_t, reduction="sum") / pos
    l_box = torch.cat(dfl_terms).sum() / pos if dfl_terms else box.sum() * 0
    l_iou = torch.cat(iou_terms).sum() / pos if iou_terms else box.sum() * 0
    return l_cls + l_box + 2.0 * l_iou


def train(model: Detector, x: torch.Tensor, boxes, classes, epochs: int) -> None:
    gen = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=5e-4)
    steps = epochs * math.ceil(len(x) / BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.15)
    model.to(memory_format=torch.channels_last)  # about twice as fast on CPU
    for epoch in range(1, epochs + 1):
        t0, total = time.perf_counter(), 0.0
        model.train()
        for idx in torch.randperm(len(x), generator=gen).split(BATCH):
            flip = torch.rand(len(idx), generator=gen) < 0.5
            batch = x[idx].float() / 255.0
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch).contiguous(memory_format=torch.channels_last)
            targets = []
            for j, i in enumerate(idx.tolist()):
                b = boxes[i].copy()
                if flip[j]:
                    b[:, [0, 2]] = SIZE - b[:, [2, 0]]
                targets.append(assign(model, b, classes[i]))
            box, cls = model(batch)
            loss = losses(model, box, cls, targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        print(f"  epoch {epoch:2d}: loss {total / len(x):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)


# ---------------------------------------------------------------- export and bundle


def export(model: Detector, path: Path) -> None:
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    model.export = True
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, SIZE, SIZE),), buf, input_names=["images"], output_names=["output0"],
                          dynamic_axes={"images": {0: "N"}, "output0": {0: "N"}}, opset_version=17, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, 9)
    proto.producer_name = "guiapp-detector-demo"
    proto.producer_version = f"torch-{torch.__version__}"
    onnx.helper.set_model_props(proto, {
        "names": str({i: n for i, n in enumerate(CLASSES)}),
        "stride": "32", "imgsz": f"[{SIZE}, {SIZE}]", "task": "detect",
        "preprocess": "RGB, letterbox to 160x160 with pad 114, x/255 (mean 0, std 255 in pixel units)",
        "author": "Quantization Studio demo (tools/make_detector.py)",
    })
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def write_images(folder: Path, scenes, prefix: str, labels: Path | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(scenes):
        (folder / f"{prefix}_{i:04d}.jpg").write_bytes(jpeg(s.image))
        if labels is not None:
            labels.mkdir(parents=True, exist_ok=True)
            (labels / f"{prefix}_{i:04d}.txt").write_text(yolo_lines(s), encoding="utf-8")


def write_job(out: Path) -> None:
    job = {
        "version": 1, "model": "model.onnx", "output": None, "report": None,
        "preprocess": JOB_SPEC.to_dict(),
        "calibration": {"folders": ["calib"], "max_images": 100, "seed": 0, "method": "minmax", "batch_size": 8},
        "evaluation": {"folders": ["eval/images"], "labels_from": "yolo", "labels_csv": None, "class_offset": 0,
                       "max_images": 100, "latency_runs": 50},
    }
    (out / "detector.job.json").write_text(json.dumps(job, indent=2) + "\n", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "resources" / "detector")
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    args = ap.parse_args()
    start = time.perf_counter()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    print(f"rendering {TRAIN_IMAGES} training scenes ...", flush=True)
    x, boxes, classes = to_training(render_set(TRAIN_SEED, TRAIN_IMAGES))
    print(f"training {args.epochs} epochs ...", flush=True)
    model = Detector()
    train(model, x, boxes, classes, args.epochs)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("calib", "eval"):
        shutil.rmtree(out / sub, ignore_errors=True)
    export(model, out / "model.onnx")
    write_images(out / "calib", render_set(CALIB_SEED, CALIB_IMAGES), "calib")
    write_images(out / "eval" / "images", render_set(EVAL_SEED, EVAL_IMAGES), "eval", out / "eval" / "labels")
    write_job(out)
    print(f"model.onnx {(out / 'model.onnx').stat().st_size / 1024:.0f} KB; done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
