"""Train small models on the project's synthetic data and export them with the
real exporters (Ultralytics, torch.onnx, paddle2onnx), into tests/exports/.

Each subcommand builds one file in a few minutes on 2 CPU cores, seeded, with
every exporter run in a temporary working directory; it then checks the file
in ONNX Runtime, measures its FP32 quality through the app's preprocessing and
records the facts in tests/exports/exports.json.

    tools/exports/env.sh                              # once: the exporters' venvs
    PY=~/.cache/guiapp/exports-env/bin/python
    $PY tools/exports/make_exports.py yolo            # or vit, dbnet, unet, paddle, all
    .venv/bin/python tools/exports/make_exports.py check   # facts + quality, app venv

Subcommand ``paddle`` renders the images here and runs paddle_worker.py in
~/.cache/guiapp/exports-env-paddle (paddle2onnx pins onnx 1.17).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

# Before torch loads OpenMP: with another job on the 2 cores, spinning worker
# threads made training ~10x slower; passive waiting costs little when alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = REPO / "tests" / "exports"
MANIFEST = OUT / "exports.json"
PADDLE_PY = Path.home() / ".cache" / "guiapp" / "exports-env-paddle" / "bin" / "python"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
for p in (REPO, REPO / "tools", HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import onnx_facts  # noqa: E402

SHAPES = ("circle", "square", "triangle", "star")  # tools/scenes.py, resources/detector
DEMO = REPO / "resources" / "demo"
DETECTOR = REPO / "resources" / "detector"

YOLO_SIZE, YOLO_EPOCHS, YOLO_TRAIN, YOLO_VAL = 160, 14, 3000, 100
VIT_SIZE, VIT_EPOCHS, VIT_TRAIN, VIT_VAL = 96, 24, 6000, 600
TEXT_EPOCHS, TEXT_TRAIN, TEXT_VAL, TEXT_EVAL, TEXT_CALIB = 10, 1600, 100, 30, 60
UNET_SIZE, UNET_EPOCHS, UNET_TRAIN, UNET_VAL = 192, 12, 1600, 100
PADDLE_EPOCHS, PADDLE_TRAIN = 8, 4000
SEEDS = {"yolo": (21, 22), "vit": (31, 32), "text": (41, 42, 43, 44), "unet": (51, 52), "paddle": (61,)}


def specs() -> dict:
    """The preprocessing of each file (guiapp PreprocessSpec, resolved)."""
    from dataclasses import replace

    from guiapp.core.data.preprocess import preset

    return {
        "yolov8n_shapes.onnx": preset("unit", 3, resize="letterbox", pad_value=114).resolved("nchw", (YOLO_SIZE, YOLO_SIZE)),
        "vit_tiny_shapes.onnx": preset("imagenet", 3, resize="shorter").resolved("nchw", (VIT_SIZE, VIT_SIZE)),
        "dbnet_text.onnx": preset("imagenet", 3, resize="stretch").resolved("nchw", (240, 320)),
        "unet_matte.onnx": preset("pm1", 3, resize="stretch").resolved("nchw", (UNET_SIZE, UNET_SIZE)),
        "paddle_shapes_cls.onnx": replace(preset("pm1", 3, resize="stretch"), color="bgr").resolved("nchw", (96, 96)),
    }


# ---------------------------------------------------------------- plumbing


@contextmanager
def temp_cwd(tag: str):
    """Run in a fresh temporary directory: whatever an exporter drops in its
    working directory goes away with it."""
    old = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=f"guiapp-exports-{tag}-") as d:
        os.chdir(d)
        try:
            yield Path(d)
        finally:
            os.chdir(old)


def torch_setup():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    return torch


def record(name: str, entry: dict) -> None:
    data = json.loads(MANIFEST.read_text(encoding="utf-8")) if MANIFEST.exists() else {}
    data[name] = entry
    MANIFEST.write_text(json.dumps(dict(sorted(data.items())), indent=2) + "\n", encoding="utf-8")


def finish(name: str, entry: dict, smoke_shapes: list[tuple[int, ...]]) -> None:
    """Describe, run at sample sizes, record."""
    path = OUT / name
    entry["preprocess"] = specs()[name].to_dict()
    entry["facts"] = onnx_facts.describe(path)
    entry["ort_runs"] = [{"input": list(s), "outputs": [[n, list(o)] for n, o in onnx_facts.smoke(path, s)]} for s in smoke_shapes]
    record(name, entry)
    print(onnx_facts.printout(path))
    for k, v in entry.items():
        if k != "facts":
            print(f"{k}: {json.dumps(v)}")


def jpeg_bytes(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def decoded(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def fit(model, batches, steps: int, lr: float, loss_fn, log_every: int, wd: float = 1e-4, warmup: float = 0.1,
        channels_last: bool = False) -> float:
    """AdamW + one-cycle over ``steps`` (x, y) batches; returns seconds.
    ``channels_last`` (CNNs): about twice as fast on CPU; the model is back
    in the default memory format afterwards, for export."""
    import torch

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warmup)
    model.train()
    start, total = time.perf_counter(), 0.0
    for step, (x, y) in enumerate(batches, 1):
        loss = loss_fn(model(x.contiguous(memory_format=fmt)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total += loss.item()
        if step % log_every == 0 or step == steps:
            print(f"  step {step}/{steps}: loss {total / log_every:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
            total = 0.0
        if step == steps:
            break
    model.to(memory_format=torch.contiguous_format)
    model.eval()
    return time.perf_counter() - start


def epochs_of(x, y, batch: int, epochs: int, augment, seed: int):
    import torch

    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            xb, yb = augment(x[idx], y[idx], gen)
            yield xb, yb


def flips(x, y, gen):
    """Random horizontal flips and 90-degree turns, applied to images and maps alike."""
    import torch

    k = int(torch.randint(0, 4, (1,), generator=gen))
    if torch.rand(1, generator=gen) < 0.5:
        x, y = x.flip(3), (y.flip(3) if y.ndim == 4 else y)
    if x.shape[2] == x.shape[3]:
        x, y = x.rot90(k, (2, 3)), (y.rot90(k, (2, 3)) if y.ndim == 4 else y)
    return x.contiguous(), y.contiguous() if y.ndim == 4 else y


def torch_export(model, example, path: Path, dynamic_axes: dict, input_names, output_names, **kw) -> float:
    """torch.onnx.export in a temporary working directory; the file(s) it
    wrote are copied to ``path``'s folder. Returns seconds."""
    import torch

    start = time.perf_counter()
    with temp_cwd("torch") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, path.name, input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=17, **kw)
        for f in sorted(tmp.iterdir()):
            print(f"  exporter wrote {f.name} ({f.stat().st_size} bytes)")
            if f.name.startswith(path.name):
                shutil.copy(f, path.parent / f.name)
    return time.perf_counter() - start


def versions(*names: str) -> dict:
    from importlib.metadata import version

    return {n: version(n) for n in names}


# ---------------------------------------------------------------- 1. Ultralytics YOLOv8n


def write_yolo_dataset(root: Path, seed: int, count: int, split: str) -> None:
    from scenes import jpeg, scene, yolo_lines

    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for i in range(count):
        s = scene(rng)
        (root / "images" / split / f"{split}_{i:05d}.jpg").write_bytes(jpeg(s.image))
        (root / "labels" / split / f"{split}_{i:05d}.txt").write_text(yolo_lines(s), encoding="utf-8")


def data_yaml(path: Path, root: Path, train: str, val: str) -> Path:
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(SHAPES))
    path.write_text(f"path: {root}\ntrain: {train}\nval: {val}\nnames:\n{names}", encoding="utf-8")
    return path


def build_yolo(args) -> None:
    name = "yolov8n_shapes.onnx"
    with temp_cwd("yolo") as tmp:
        # Offline: no hub events, no auto-install, no font download (check_dataset
        # asks for Arial.ttf and HEADs the assets URL unless the config dir has one).
        config = tmp / "config"
        (config / "Ultralytics").mkdir(parents=True)
        shutil.copy(DEJAVU, config / "Ultralytics" / "Arial.ttf")
        os.environ.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="False", YOLO_CONFIG_DIR=str(config), MPLCONFIGDIR=str(tmp / "mpl"))
        torch_setup()
        from ultralytics import YOLO, settings

        settings.update({"sync": False, "runs_dir": str(tmp / "runs"), "datasets_dir": str(tmp / "datasets"),
                         "weights_dir": str(tmp / "weights")})
        t0 = time.perf_counter()
        data = tmp / "shapes"
        write_yolo_dataset(data, SEEDS["yolo"][0], args.yolo_train, "train")
        write_yolo_dataset(data, SEEDS["yolo"][1], YOLO_VAL, "val")
        # resources/detector/eval, copied: Ultralytics writes a labels.cache beside the labels.
        shutil.copytree(DETECTOR / "eval" / "images", tmp / "eval" / "images" / "eval")
        shutil.copytree(DETECTOR / "eval" / "labels", tmp / "eval" / "labels" / "eval")
        print(f"dataset written in {time.perf_counter() - t0:.0f} s")
        model = YOLO("yolov8n.yaml")
        t0 = time.perf_counter()
        data_yaml(tmp / "shapes.yaml", data, "images/train", "images/val")
        model.train(data="shapes.yaml", epochs=args.yolo_epochs,  # relative: the metadata's description names it
                    imgsz=YOLO_SIZE, batch=32, device="cpu", workers=2, project=str(tmp / "runs"), name="train", exist_ok=True,
                    seed=0, deterministic=True, plots=False, val=False, amp=False, warmup_epochs=1, close_mosaic=3, verbose=False)
        train_seconds = time.perf_counter() - t0
        best = Path(model.trainer.best if Path(model.trainer.best).exists() else model.trainer.last)
        eval_yaml = data_yaml(tmp / "eval.yaml", tmp / "eval", "images/eval", "images/eval")
        pt_metrics = YOLO(str(best)).val(data=str(eval_yaml), imgsz=YOLO_SIZE, batch=16, device="cpu", plots=False,
                                         project=str(tmp / "runs"), name="val_pt", verbose=False)
        exported = Path(YOLO(str(best)).export(format="onnx", dynamic=True, opset=17, imgsz=YOLO_SIZE))
        print("  exporter wrote", sorted(p.name for p in exported.parent.iterdir()))
        shutil.copy(exported, OUT / name)
        onnx_metrics = YOLO(str(OUT / name), task="detect").val(data=str(eval_yaml), imgsz=YOLO_SIZE, batch=1, device="cpu",
                                                                plots=False, project=str(tmp / "runs"), name="val_onnx", verbose=False)
    quality = onnx_facts.detector_quality(OUT / name, DETECTOR / "eval" / "images", DETECTOR / "eval" / "labels",
                                          specs()[name], len(SHAPES))
    finish(name, {
        "exporter": "ultralytics YOLO.export(format='onnx', dynamic=True, opset=17, imgsz=%d)" % YOLO_SIZE,
        "versions": versions("ultralytics", "torch", "onnx", "onnxslim"),
        "training": {"images": args.yolo_train, "epochs": args.yolo_epochs, "imgsz": YOLO_SIZE, "seconds": round(train_seconds)},
        "quality_fp32": {
            "ultralytics_val_pt": {"map50": round(float(pt_metrics.box.map50), 4), "map50_95": round(float(pt_metrics.box.map), 4)},
            "ultralytics_val_onnx": {"map50": round(float(onnx_metrics.box.map50), 4), "map50_95": round(float(onnx_metrics.box.map), 4)},
            "ort_app_letterbox": quality,
            "on": "resources/detector/eval (100 scenes)",
        },
    }, [(1, 3, YOLO_SIZE, YOLO_SIZE), (2, 3, 256, 320)])


# ---------------------------------------------------------------- 2. timm ViT


def demo_tensors(seed: int, count: int, spec):
    import torch
    from make_demo import mixed_set

    from guiapp.core.data.preprocess import prepare

    jpegs, labels = mixed_set(seed, count)
    x = np.stack([prepare(decoded(j), spec).tensor for j in jpegs])
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def conv_stem_vit():
    """timm's VisionTransformer with a convolutional stem in place of the
    patchify conv (Xiao et al. 2021, "Early Convolutions Help Transformers See
    Better"): four stride-2 3x3 conv-BN-ReLU, then a 1x1 projection, giving the
    same 6x6 grid of tokens as patch 16. The transformer (LayerNorm, GELU MLP,
    Softmax attention) is timm's own. A plain patch-12 ViT of this size stayed
    at chance (loss ln 6) after 400 steps of 64 shapes; this one learns in minutes."""
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    class ConvStemEmbed(PatchEmbed):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            w = (3, 24, 48, 96, 192)
            layers = [m for a, b in zip(w[:-1], w[1:]) for m in cbr(a, b, 2)]
            self.proj = nn.Sequential(*layers, nn.Conv2d(w[-1], self.proj.out_channels, 1))

    return VisionTransformer(img_size=VIT_SIZE, patch_size=16, num_classes=6, embed_dim=192, depth=4, num_heads=3, mlp_ratio=2.0,
                             drop_path_rate=0.05, embed_layer=ConvStemEmbed)


def build_vit(args) -> None:
    name = "vit_tiny_shapes.onnx"
    torch = torch_setup()
    spec = specs()[name]
    t0 = time.perf_counter()
    x, y = demo_tensors(SEEDS["vit"][0], args.vit_train, spec)
    xv, yv = demo_tensors(SEEDS["vit"][1], VIT_VAL, spec)
    print(f"rendered {len(x) + len(xv)} images in {time.perf_counter() - t0:.0f} s")
    model = conv_stem_vit()
    steps = args.vit_epochs * math.ceil(len(x) / 64)
    loss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    seconds = fit(model, epochs_of(x, y, 64, args.vit_epochs, flips, 0), steps, 1e-3, loss, 200, wd=0.05)
    with torch.no_grad():
        val = float((torch.cat([model(b).argmax(1) for b in xv.split(200)]) == yv).float().mean())
    print(f"hold-out top-1 {val:.2%}")
    export_seconds = torch_export(model, (torch.zeros(1, 3, VIT_SIZE, VIT_SIZE),), OUT / name,
                                  {"input": {0: "batch"}, "logits": {0: "batch"}}, ["input"], ["logits"])
    acc, n = onnx_facts.top1(OUT / name, DEMO / "eval", DEMO / "labels.csv", spec)
    finish(name, {
        "exporter": "torch.onnx.export(model, x, f, input_names=['input'], output_names=['logits'], "
                    "dynamic_axes={'input': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=17)  # dynamo=True default",
        "versions": versions("torch", "timm", "onnxscript", "onnx"),
        "model": "timm VisionTransformer(img_size=96, patch_size=16, embed_dim=192, depth=4, num_heads=3, mlp_ratio=2, num_classes=6, "
                 "embed_layer=conv stem: 4 x (3x3 stride-2 conv, BN, ReLU) 24-48-96-192 ch + 1x1 conv to 192), class token, 36 patches",
        "classes": sorted(["circle", "cross", "ring", "square", "star", "triangle"]),
        "training": {"images": len(x), "epochs": args.vit_epochs, "seconds": round(seconds), "export_seconds": round(export_seconds, 1)},
        "quality_fp32": {"top1": round(acc, 4), "images": n, "on": "resources/demo/eval", "holdout_top1_torch": round(val, 4)},
    }, [(1, 3, VIT_SIZE, VIT_SIZE), (4, 3, VIT_SIZE, VIT_SIZE)])


# ---------------------------------------------------------------- 3. DBNet-style text detector


def cbr(cin: int, cout: int, stride: int = 1, k: int = 3):
    from torch import nn

    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def text_detector():
    """A small ResNet-ish backbone (strides 4-32), an FPN whose top-down path
    resizes to the lateral's size (any input size works), and DBNet's
    probability head, kept at 1/4 of the input."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    class DBNetTiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(cbr(3, 16, 2), cbr(16, 16))
            widths = (16, 32, 64, 96, 128)
            self.stages = nn.ModuleList(nn.Sequential(cbr(a, b, 2), cbr(b, b)) for a, b in zip(widths[:-1], widths[1:]))
            self.lateral = nn.ModuleList(nn.Conv2d(c, 64, 1) for c in widths[1:])
            self.smooth = nn.ModuleList(cbr(64, 16) for _ in widths[1:])
            self.head = nn.Sequential(cbr(64, 32), nn.Conv2d(32, 1, 1))

        def forward(self, x):
            feats, f = [], self.stem(x)
            for stage in self.stages:
                f = stage(f)
                feats.append(f)  # strides 4, 8, 16, 32
            lat = [lc(f) for lc, f in zip(self.lateral, feats)]
            p = [lat[-1]]
            for lf in reversed(lat[:-1]):
                p.insert(0, lf + F.interpolate(p[0], size=lf.shape[-2:], mode="nearest"))
            size = p[0].shape[-2:]
            fused = torch.cat([F.interpolate(s(q), size=size, mode="nearest") if i else s(q) for i, (s, q) in enumerate(zip(self.smooth, p))], 1)
            return torch.sigmoid(self.head(fused))

    return DBNetTiny()


def text_set(seed: int, count: int):
    from text_scenes import fonts_available, text_scene

    rng = np.random.default_rng(seed)
    fonts = fonts_available()
    return [text_scene(rng, fonts) for _ in range(count)]


def text_tensors(scenes, spec):
    """Inputs through a JPEG round trip and the app's preprocessing; targets:
    the region masks at 1/4 (area average, soft)."""
    import torch
    from PIL import Image

    from guiapp.core.data.preprocess import prepare

    x = np.stack([prepare(decoded(jpeg_bytes(s.image)), spec).tensor for s in scenes])
    h, w = spec.size
    y = np.stack([np.asarray(Image.fromarray(s.mask).resize((w // 4, h // 4), Image.Resampling.BOX), np.float32)[None] / 255 for s in scenes])
    return torch.from_numpy(x), torch.from_numpy(y)


def bce_dice(pred, target):
    import torch.nn.functional as F

    inter = (pred * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (pred.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return F.binary_cross_entropy(pred.clamp(1e-6, 1 - 1e-6), target) + dice.mean()


def write_text_images(folder: Path, scenes, prefix: str, masks: Path | None) -> None:
    from PIL import Image

    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if masks is not None:
        shutil.rmtree(masks, ignore_errors=True)
        masks.mkdir(parents=True)
    for i, s in enumerate(scenes):
        (folder / f"{prefix}_{i:03d}.jpg").write_bytes(jpeg_bytes(s.image, 85))
        if masks is not None:
            Image.fromarray(s.mask).convert("1").save(masks / f"{prefix}_{i:03d}.png", optimize=True)


def build_dbnet(args) -> None:
    name = "dbnet_text.onnx"
    torch = torch_setup()
    spec = specs()[name]
    seeds = SEEDS["text"]
    t0 = time.perf_counter()
    x, y = text_tensors(text_set(seeds[0], args.text_train), spec)
    xv, yv = text_tensors(text_set(seeds[1], TEXT_VAL), spec)
    print(f"rendered {len(x) + len(xv)} text images in {time.perf_counter() - t0:.0f} s")
    model = text_detector()
    steps = args.text_epochs * math.ceil(len(x) / 16)
    seconds = fit(model, epochs_of(x, y, 16, args.text_epochs, flips, 0), steps, 3e-3, bce_dice, 100, channels_last=True)
    with torch.no_grad():
        p = torch.cat([model(b) for b in xv.split(25)]) > 0.3
        t = yv > 0.5
        val_iou = float((p & t).sum() / (p | t).sum())
    print(f"hold-out map IoU {val_iou:.3f}")
    export_seconds = torch_export(model, (torch.zeros(1, 3, 240, 320),), OUT / name,
                                  {"images": {0: "batch", 2: "height", 3: "width"}, "probs": {0: "batch", 2: "map_height", 3: "map_width"}},
                                  ["images"], ["probs"], external_data=False)
    text = OUT / "text"
    write_text_images(text / "eval" / "images", text_set(seeds[2], TEXT_EVAL), "eval", text / "eval" / "masks")
    write_text_images(text / "calib", text_set(seeds[3], TEXT_CALIB), "calib", None)
    images = sorted((text / "eval" / "images").glob("*.jpg"))
    masks = [text / "eval" / "masks" / (f.stem + ".png") for f in images]
    q_map = onnx_facts.map_iou(OUT / name, images, masks, spec, 0.3, at="map")
    q_src = onnx_facts.map_iou(OUT / name, images, masks, spec, 0.3, at="source")
    finish(name, {
        "exporter": "torch.onnx.export(model, x, f, input_names=['images'], output_names=['probs'], dynamic_axes={'images': "
                    "{0: 'batch', 2: 'height', 3: 'width'}, 'probs': {0: 'batch', 2: 'map_height', 3: 'map_width'}}, "
                    "opset_version=17, external_data=False)  # dynamo=True default",
        "versions": versions("torch", "onnxscript", "onnx"),
        "model": "DBNet-style: ResNet-ish backbone 16-128 ch (strides 4-32), FPN 64 ch resized to the lateral's size, "
                 "probability head with Sigmoid at 1/4 resolution",
        "training": {"images": len(x), "epochs": args.text_epochs, "seconds": round(seconds), "export_seconds": round(export_seconds, 1),
                     "targets": "plain word boxes (font ink box + 2 px, turned with the word), not shrunk"},
        "quality_fp32": {"threshold": 0.3, "at_map_resolution": q_map, "at_source_resolution": q_src, "holdout_iou_torch": round(val_iou, 4),
                         "on": "tests/exports/text/eval (images + masks)"},
    }, [(1, 3, 240, 320), (2, 3, 256, 192), (1, 3, 250, 330)])


# ---------------------------------------------------------------- 4. U-Net matte


def unet():
    import torch
    from torch import nn
    from torch.nn import functional as F

    class UNetTiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = (16, 32, 48, 64, 96)
            self.enc = nn.ModuleList([nn.Sequential(cbr(3, w[0], 2), cbr(w[0], w[0]))]
                                     + [nn.Sequential(cbr(a, b, 2), cbr(b, b)) for a, b in zip(w[:-1], w[1:])])
            self.dec = nn.ModuleList(nn.Sequential(cbr(b + a, a), cbr(a, a)) for a, b in zip(w[:-1], w[1:]))
            self.out = nn.Conv2d(w[0], 1, 3, padding=1)

        def forward(self, image):
            skips, x = [], image
            for e in self.enc:
                x = e(x)
                skips.append(x)
            x = skips.pop()
            for d in reversed(self.dec):
                s = skips.pop()
                x = d(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
            # The decoder stops at 1/2; the logits are resized to the input's size.
            x = F.interpolate(self.out(x), size=image.shape[-2:], mode="bilinear", align_corners=False)
            return torch.sigmoid(x)

    return UNetTiny()


def scene_tensors(scenes, spec):
    import torch
    from PIL import Image

    from guiapp.core.data.preprocess import prepare

    x = np.stack([prepare(decoded(jpeg_bytes(s.image)), spec).tensor for s in scenes])
    h, w = spec.size
    y = np.stack([np.asarray(Image.fromarray(s.mask.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))[None] for s in scenes])
    return torch.from_numpy(x), torch.from_numpy(np.clip(y, 0, 1).astype(np.float32))


def matte_masks() -> Path:
    """True masks of resources/detector/eval: the scenes come from seed 14
    (tools/make_detector.py EVAL_SEED); each is checked byte for byte against
    the image on disk before its mask is written."""
    from PIL import Image
    from scenes import jpeg, scene

    folder = OUT / "matte" / "eval_masks"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(14)
    for i in range(100):
        s = scene(rng)
        on_disk = (DETECTOR / "eval" / "images" / f"eval_{i:04d}.jpg").read_bytes()
        if jpeg(s.image) != on_disk:
            raise SystemExit(f"eval_{i:04d}.jpg differs from the regenerated scene: resources/detector changed")
        Image.fromarray((s.mask * 255).round().astype(np.uint8)).save(folder / f"eval_{i:04d}.png", optimize=True)
    return folder


def build_unet(args) -> None:
    name = "unet_matte.onnx"
    torch = torch_setup()
    from scenes import scene

    spec = specs()[name]
    t0 = time.perf_counter()
    rng_t, rng_v = (np.random.default_rng(s) for s in SEEDS["unet"])
    x, y = scene_tensors([scene(rng_t) for _ in range(args.unet_train)], spec)
    xv, yv = scene_tensors([scene(rng_v) for _ in range(UNET_VAL)], spec)
    print(f"rendered {len(x) + len(xv)} scenes in {time.perf_counter() - t0:.0f} s")
    model = unet()
    steps = args.unet_epochs * math.ceil(len(x) / 16)
    seconds = fit(model, epochs_of(x, y, 16, args.unet_epochs, flips, 0), steps, 3e-3, bce_dice, 100, channels_last=True)
    with torch.no_grad():
        p, t = torch.cat([model(b) for b in xv.split(25)]) > 0.5, yv > 0.5
        val_iou = float((p & t).sum() / (p | t).sum())
    print(f"hold-out IoU {val_iou:.3f}")
    model.eval()
    export_seconds = torch_export(model, (torch.zeros(1, 3, UNET_SIZE, UNET_SIZE),), OUT / name,
                                  {"input": {0: "batch", 2: "height", 3: "width"}, "alpha": {0: "batch", 2: "height", 3: "width"}},
                                  ["input"], ["alpha"], dynamo=False)
    masks_dir = matte_masks()
    images = sorted((DETECTOR / "eval" / "images").glob("*.jpg"))
    masks = [masks_dir / (f.stem + ".png") for f in images]
    q = onnx_facts.map_iou(OUT / name, images, masks, spec, 0.5, at="source")
    q_map = onnx_facts.map_iou(OUT / name, images, masks, spec, 0.5, at="map")
    finish(name, {
        "exporter": "torch.onnx.export(model, x, f, input_names=['input'], output_names=['alpha'], dynamic_axes={'input': "
                    "{0: 'batch', 2: 'height', 3: 'width'}, 'alpha': {0: 'batch', 2: 'height', 3: 'width'}}, opset_version=17, "
                    "dynamo=False)  # the TorchScript exporter",
        "versions": versions("torch", "onnx"),
        "model": "U-Net, 5 levels at strides 2-32 (16-96 ch, strided convs down, bilinear resize to the skip's size up), logits at 1/2 resized (bilinear) to the input size, Sigmoid alpha",
        "training": {"images": len(x), "epochs": args.unet_epochs, "seconds": round(seconds), "export_seconds": round(export_seconds, 1)},
        "quality_fp32": {"threshold": 0.5, "at_source_resolution": q, "at_map_resolution": q_map, "holdout_iou_torch": round(val_iou, 4),
                         "on": "resources/detector/eval images, masks in tests/exports/matte/eval_masks",
                         "calibration": "resources/detector/calib"},
    }, [(1, 3, UNET_SIZE, UNET_SIZE), (2, 3, 240, 176), (1, 3, 250, 330)])


# ---------------------------------------------------------------- 5. paddle2onnx


def build_paddle(args) -> None:
    name = "paddle_shapes_cls.onnx"
    if not PADDLE_PY.exists():
        raise SystemExit(f"{PADDLE_PY} missing: run tools/exports/env.sh")
    spec = specs()[name]
    t0 = time.perf_counter()
    x, y = demo_tensors(SEEDS["paddle"][0], args.paddle_train, spec)
    print(f"rendered {len(x)} images in {time.perf_counter() - t0:.0f} s")
    with temp_cwd("paddle") as tmp:
        np.savez(tmp / "train.npz", x=x.numpy(), y=y.numpy())
        run = subprocess.run([str(PADDLE_PY), str(HERE / "paddle_worker.py"), "--data", str(tmp / "train.npz"), "--work", str(tmp),
                              "--name", name[:-5], "--epochs", str(args.paddle_epochs)], cwd=tmp, stdout=subprocess.PIPE, text=True)
        info = json.loads(run.stdout.strip().splitlines()[-1])
        if run.returncode != 0:
            raise SystemExit(f"paddle worker failed: {info}")
        print("  exporter wrote", sorted(p.name for p in tmp.iterdir()))
        shutil.copy(tmp / name, OUT / name)
        probe = np.load(tmp / "paddle_probe.npy")
    got = onnx_facts.session(OUT / name)
    diff = float(np.abs(got.run(None, {got.get_inputs()[0].name: x[:8].numpy()})[0] - probe).max())
    acc, n = onnx_facts.top1(OUT / name, DEMO / "eval", DEMO / "labels.csv", spec)
    finish(name, {
        "exporter": info.pop("command") + "  # defaults otherwise",
        "versions": {"paddlepaddle": info.pop("paddle"), "paddle2onnx": info.pop("paddle2onnx")},
        "model": "Paddle CNN classifier (5 conv-BN-ReLU, 3 max-pools, GAP, Linear), paddle.jit.save with InputSpec [None, 3, 96, 96] 'x'",
        "classes": sorted(["circle", "cross", "ring", "square", "star", "triangle"]),
        "training": {"images": info.pop("train_images"), "epochs": info.pop("epochs"), "seconds": info.pop("train_seconds"),
                     "inference_files": info.pop("inference_files")},
        "quality_fp32": {"top1": round(acc, 4), "images": n, "on": "resources/demo/eval", "max_abs_diff_vs_paddle": diff},
    }, [(1, 3, 96, 96), (3, 3, 96, 96)])


# ---------------------------------------------------------------- check


def check(args) -> None:
    """Facts and FP32 quality of every file, with whatever Python runs this."""
    sp = specs()
    for name, spec in sp.items():
        path = OUT / name
        if not path.exists():
            print(f"# {name}: missing")
            continue
        print(onnx_facts.printout(path))
        if MANIFEST.exists():  # the file's facts as they are now (the rest stays as measured when built)
            data = json.loads(MANIFEST.read_text(encoding="utf-8"))
            if name in data:
                data[name]["facts"] = onnx_facts.describe(path)
                MANIFEST.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        h, w = spec.size
        print("  ORT runs:", onnx_facts.smoke(path, (1, 3, h, w)), onnx_facts.smoke(path, (2, 3, h, w)))
        if name.startswith("yolo"):
            q = onnx_facts.detector_quality(path, DETECTOR / "eval" / "images", DETECTOR / "eval" / "labels", spec, len(SHAPES))
        elif name.startswith(("vit", "paddle")):
            q = dict(zip(("top1", "images"), onnx_facts.top1(path, DEMO / "eval", DEMO / "labels.csv", spec)))
        elif name.startswith("dbnet"):
            images = sorted((OUT / "text" / "eval" / "images").glob("*.jpg"))
            q = onnx_facts.map_iou(path, images, [OUT / "text" / "eval" / "masks" / (f.stem + ".png") for f in images], spec, 0.3, "map")
        else:
            images = sorted((DETECTOR / "eval" / "images").glob("*.jpg"))
            q = onnx_facts.map_iou(path, images, [OUT / "matte" / "eval_masks" / (f.stem + ".png") for f in images], spec, 0.5, "source")
        print("  FP32:", json.dumps(q), "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("yolo", "vit", "dbnet", "unet", "paddle", "all", "check"))
    ap.add_argument("--yolo-epochs", type=int, default=YOLO_EPOCHS)
    ap.add_argument("--yolo-train", type=int, default=YOLO_TRAIN)
    ap.add_argument("--vit-epochs", type=int, default=VIT_EPOCHS)
    ap.add_argument("--vit-train", type=int, default=VIT_TRAIN)
    ap.add_argument("--text-epochs", type=int, default=TEXT_EPOCHS)
    ap.add_argument("--text-train", type=int, default=TEXT_TRAIN)
    ap.add_argument("--unet-epochs", type=int, default=UNET_EPOCHS)
    ap.add_argument("--unet-train", type=int, default=UNET_TRAIN)
    ap.add_argument("--paddle-epochs", type=int, default=PADDLE_EPOCHS)
    ap.add_argument("--paddle-train", type=int, default=PADDLE_TRAIN)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    builders = {"yolo": build_yolo, "vit": build_vit, "dbnet": build_dbnet, "unet": build_unet, "paddle": build_paddle, "check": check}
    for what in (("yolo", "vit", "dbnet", "unet", "paddle") if args.what == "all" else (args.what,)):
        start = time.perf_counter()
        builders[what](args)
        print(f"== {what}: {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
