"""Build the demo bundle in ``resources/demo/`` that ``guiapp demo`` quantizes.

The script draws a synthetic data set of 110x110 RGB pictures of six shapes
(circle, cross, ring, square, star, triangle) on random backgrounds, trains a
small CNN classifier on it with PyTorch, exports it to ONNX and writes:

- ``model.onnx``      the FP32 classifier: input ``input`` float32 [N, 3, 96, 96],
                      output ``logits`` float32 [N, 6], classes in sorted name order
- ``calib/``          300 unlabeled calibration images (flat folder)
- ``eval/<class>/``   50 evaluation images per class
- ``labels.csv``      the evaluation labels as ``file,class_index``
- ``demo.job.json``   the quantization job ``guiapp demo`` runs

Training tensors go through the app's own preprocessing
(:func:`guiapp.core.data.preprocess.prepare`) after a JPEG round trip, so the model
learns on exactly what the app feeds it at inference. Every random choice comes
from fixed seeds: a rerun writes byte-identical images.

Run it from the repository root (torch is a development-only dependency)::

    pip install torch==2.13.0
    python tools/make_demo.py            # or --out DIR to write elsewhere
"""

from __future__ import annotations

import argparse
import csv
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
import onnxruntime as ort
import torch
from PIL import Image, ImageDraw
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # import guiapp from this checkout

from guiapp.core.job import Job  # noqa: E402
from guiapp.core.run import job_from_dict, load_job
from guiapp.core.data.preprocess import load_tensor, prepare, preset  # noqa: E402

CLASSES = sorted(["circle", "square", "triangle", "cross", "ring", "star"])  # index = position
IMAGE_SIZE = 110
JPEG_QUALITY = 90
SUPERSAMPLE = 4  # shapes are drawn this much larger, then downscaled: anti-aliasing

JOB_SPEC = preset("imagenet", 3, resize="shorter")  # as written in demo.job.json
SPEC = JOB_SPEC.resolved("nchw", (96, 96))  # shorter side 110 (= the image), centre crop 96

TRAIN_SEED, VAL_SEED, CALIB_SEED, EVAL_SEED, TORCH_SEED = 1, 2, 3, 4, 0
TRAIN_IMAGES, VAL_IMAGES, CALIB_IMAGES, EVAL_PER_CLASS = 6000, 1200, 300, 50
EPOCHS, BATCH_SIZE, LEARNING_RATE = 10, 64, 3e-3

MODEL_METADATA = {
    "classes": ",".join(CLASSES),
    "preprocess": "RGB, shorter side 110, centre crop 96, mean 123.675,116.28,103.53, std 58.395,57.12,57.375 (pixel units)",
    "author": "Quantization Studio demo (tools/make_demo.py)",
}

JOB = {
    "version": 1,
    "model": "model.onnx",
    "output": None,
    "report": None,
    "preprocess": JOB_SPEC.to_dict(),
    "calibration": {"folders": ["calib"], "max_images": 200, "seed": 0, "method": "minmax", "batch_size": 8},
    "quantization": {
        "format": "qdq",
        "per_channel": True,
        "activation_type": "uint8",
        "weight_type": "int8",
        "symmetric_activations": False,
        "reduce_range": False,
        "exclude_nodes": [],
        "exclude_op_types": [],
    },
    "evaluation": {
        "folders": ["eval"],
        "labels_from": "subfolders",
        "labels_csv": None,
        "class_offset": 0,
        "max_images": 300,
        "latency_runs": 50,
    },
}


# ---------------------------------------------------------------- drawing


def luminance(rgb) -> float:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def random_color(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def color_in_luminance(rng: np.random.Generator, lo: float, hi: float) -> tuple[int, int, int]:
    """A random colour whose luminance lies in [lo, hi] (a range at least 40 wide)."""
    while True:
        color = random_color(rng)
        if lo <= luminance(color) <= hi:
            return color


def background(rng: np.random.Generator, shape_color: tuple[int, int, int]) -> np.ndarray:
    """A solid or linear-gradient float (H, W, 3) background that contrasts with
    ``shape_color``: every pixel is at least 60 luminance levels darker, or every
    pixel lighter (luminance is linear along the gradient)."""
    shape_lum = luminance(shape_color)
    sides = [side for side, ok in (("darker", shape_lum >= 100), ("lighter", shape_lum <= 155)) if ok]
    lo, hi = (0, shape_lum - 60) if rng.choice(sides) == "darker" else (shape_lum + 60, 255)
    c0 = np.array(color_in_luminance(rng, lo, hi), np.float64)
    if rng.random() < 0.4:
        return np.broadcast_to(c0, (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    c1 = np.array(color_in_luminance(rng, lo, hi), np.float64)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] / (IMAGE_SIZE - 1) - 0.5
    t = xx * math.cos(angle) + yy * math.sin(angle)
    t = ((t - t.min()) / (t.max() - t.min()))[..., None]
    return (1 - t) * c0 + t * c1


def polygon(cx: float, cy: float, radii: list[float], rotation: float) -> list[tuple[float, float]]:
    """Vertices at evenly spaced angles with the given radii, turned by ``rotation``."""
    n = len(radii)
    return [
        (cx + r * math.cos(rotation + 2 * math.pi * i / n), cy + r * math.sin(rotation + 2 * math.pi * i / n))
        for i, r in enumerate(radii)
    ]


def cross_outline(cx: float, cy: float, r: float, rotation: float) -> list[tuple[float, float]]:
    """A plus sign with arms reaching ``r`` from the centre."""
    w = r * 0.33
    corners = [(w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w), (-w, -r)]
    c, s = math.cos(rotation), math.sin(rotation)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in corners]


def draw_shape(draw: ImageDraw.ImageDraw, name: str, cx: float, cy: float, r: float, rng: np.random.Generator) -> None:
    """Draw class ``name`` filled with 255, centred at (cx, cy), outer radius ``r``."""
    rotation = rng.uniform(0, 2 * math.pi)
    box = (cx - r, cy - r, cx + r, cy + r)
    if name == "circle":
        draw.ellipse(box, fill=255)
    elif name == "ring":
        inner = r * rng.uniform(0.45, 0.7)
        draw.ellipse(box, fill=255)
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=0)
    elif name == "square":
        draw.polygon(polygon(cx, cy, [r] * 4, rotation), fill=255)
    elif name == "triangle":
        draw.polygon(polygon(cx, cy, [r] * 3, rotation), fill=255)
    elif name == "star":
        draw.polygon(polygon(cx, cy, [r, r * rng.uniform(0.38, 0.5)] * 5, rotation), fill=255)
    elif name == "cross":
        draw.polygon(cross_outline(cx, cy, r, rotation), fill=255)
    else:
        raise ValueError(f"unknown shape {name!r}")


def shape_mask(rng: np.random.Generator, name: str) -> np.ndarray:
    """An anti-aliased float (H, W) coverage mask of one randomly placed shape."""
    big = IMAGE_SIZE * SUPERSAMPLE
    r = rng.uniform(0.35, 0.70) * big / 2  # diameter 35-70% of the image
    margin = 0.9 * r  # the shape may stick out of the picture by up to 10% of its radius
    cx, cy = rng.uniform(margin, big - margin, size=2)
    mask = Image.new("L", (big, big), 0)
    draw_shape(ImageDraw.Draw(mask), name, cx, cy, r, rng)
    mask = mask.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(mask, np.float64)[..., None] / 255.0


def add_distractor(rng: np.random.Generator, img: Image.Image) -> None:
    """Sometimes a thin line or a small blob somewhere on the background."""
    draw = ImageDraw.Draw(img)
    roll = rng.random()
    if roll < 0.12:
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, IMAGE_SIZE, size=4))
        draw.line((x0, y0, x1, y1), fill=random_color(rng), width=int(rng.integers(1, 3)))
    elif roll < 0.22:
        x, y = rng.uniform(0, IMAGE_SIZE, size=2)
        rx, ry = rng.uniform(2, 5, size=2)
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=random_color(rng))


def render(rng: np.random.Generator, name: str) -> Image.Image:
    """One IMAGE_SIZE x IMAGE_SIZE RGB picture of shape ``name``."""
    color = random_color(rng)
    canvas = Image.fromarray(background(rng, color).round().astype(np.uint8))
    add_distractor(rng, canvas)
    mask = shape_mask(rng, name)
    pixels = np.asarray(canvas, np.float64) * (1 - mask) + np.array(color, np.float64) * mask
    pixels += rng.normal(0, rng.uniform(1, 5), size=pixels.shape)
    return Image.fromarray(np.clip(pixels.round(), 0, 255).astype(np.uint8))


def encode_jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def render_jpegs(rng: np.random.Generator, labels: np.ndarray) -> list[bytes]:
    return [encode_jpeg(render(rng, CLASSES[i])) for i in labels]


def mixed_set(seed: int, count: int) -> tuple[list[bytes], np.ndarray]:
    """``count`` JPEG pictures with balanced classes in random order, and their labels."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(CLASSES))
    return render_jpegs(rng, labels), labels


# ---------------------------------------------------------------- training


def to_tensors(jpegs: list[bytes]) -> torch.Tensor:
    """The app's input tensors for in-memory JPEG files.

    ``Image.open(...).convert("RGB")`` decodes a plain RGB JPEG exactly as
    :func:`guiapp.core.data.imagefile.open_rgb` does for a file on disk.
    """
    arrays = [prepare(Image.open(io.BytesIO(j)).convert("RGB"), SPEC).tensor for j in jpegs]
    return torch.from_numpy(np.stack(arrays))


def conv_block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return layers + [nn.MaxPool2d(2)] if pool else layers


def make_model() -> nn.Module:
    return nn.Sequential(
        # Big enough (about 100M multiply-adds) for INT8 to run faster than
        # FP32: at 64x64 with half the widths, quantize/dequantize overhead won.
        *conv_block(3, 24, pool=True),
        *conv_block(24, 48, pool=True),
        *conv_block(48, 96, pool=True),
        *conv_block(96, 96, pool=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(96, len(CLASSES)),
    )


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    predictions = torch.cat([model(batch).argmax(1) for batch in x.split(256)])
    return (predictions == y).float().mean().item()


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor) -> None:
    # channels-last runs about twice as fast on CPU here; results stay deterministic.
    model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(TORCH_SEED)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=1e-4)
    steps = EPOCHS * math.ceil(len(x) / BATCH_SIZE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=LEARNING_RATE, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(1, EPOCHS + 1):
        start = time.perf_counter()
        model.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=generator).split(BATCH_SIZE):
            batch = x[idx]
            flip = torch.rand(len(idx), generator=generator) < 0.5  # a mirrored shape keeps its class
            batch = torch.where(flip[:, None, None, None], batch.flip(3), batch)
            loss = loss_fn(model(batch), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        seconds = time.perf_counter() - start
        print(f"  epoch {epoch:2d}: loss {total / len(x):.4f}, hold-out accuracy {accuracy(model, x_val, y_val):.2%} ({seconds:.0f} s)")
    model.to(memory_format=torch.contiguous_format)


# ---------------------------------------------------------------- ONNX


def export_onnx(model: nn.Module, path: Path) -> None:
    """Export with BatchNorm folded, IR <= 9, opset 17, and the demo's metadata."""
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is "legacy"
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, *SPEC.size),),
            buf,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.ir_version = min(proto.ir_version, 9)
    proto.producer_name = "guiapp-demo"
    proto.producer_version = f"torch-{torch.__version__}"
    onnx.helper.set_model_props(proto, MODEL_METADATA)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def onnx_accuracy(model_path: Path, files: list[Path], labels: list[int]) -> float:
    """Top-1 of the ONNX model on image files, through the app's own loader."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    x = np.stack([load_tensor(f, SPEC) for f in files])
    (logits,) = session.run(["logits"], {"input": x})
    return float(np.mean(logits.argmax(1) == np.array(labels)))


# ---------------------------------------------------------------- bundle


def write_images(folder: Path, names: list[str], jpegs: list[bytes]) -> list[Path]:
    paths = []
    for name, data in zip(names, jpegs):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


def write_calibration(out: Path) -> None:
    jpegs, _ = mixed_set(CALIB_SEED, CALIB_IMAGES)
    write_images(out / "calib", [f"calib_{i:04d}.jpg" for i in range(len(jpegs))], jpegs)


def write_evaluation(out: Path) -> tuple[list[Path], list[int]]:
    labels = np.repeat(np.arange(len(CLASSES)), EVAL_PER_CLASS)
    jpegs = render_jpegs(np.random.default_rng(EVAL_SEED), labels)
    names = [f"{CLASSES[c]}/eval_{CLASSES[c]}_{i % EVAL_PER_CLASS:03d}.jpg" for i, c in enumerate(labels)]
    paths = write_images(out / "eval", names, jpegs)
    with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "class_index"])
        writer.writerows(zip(names, labels.tolist()))
    return paths, labels.tolist()


def write_job(out: Path) -> None:
    path = out / "demo.job.json"
    path.write_text(json.dumps(JOB, indent=2) + "\n", encoding="utf-8")
    job = load_job(path)  # the app must accept what we wrote
    assert job.preprocess == JOB_SPEC, job.preprocess


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "resources" / "demo", help="bundle folder (default: %(default)s)")
    out: Path = parser.parse_args().out
    start = time.perf_counter()
    torch.manual_seed(TORCH_SEED)
    torch.set_num_threads(2)

    print(f"rendering {TRAIN_IMAGES} training and {VAL_IMAGES} hold-out images ...")
    train_jpegs, y_train = mixed_set(TRAIN_SEED, TRAIN_IMAGES)
    val_jpegs, y_val = mixed_set(VAL_SEED, VAL_IMAGES)
    x_train, x_val = to_tensors(train_jpegs), to_tensors(val_jpegs)
    y_train, y_val = torch.from_numpy(y_train), torch.from_numpy(y_val)

    print(f"training for {EPOCHS} epochs ...")
    model = make_model()
    train(model, x_train, y_train, x_val, y_val)

    print(f"writing the bundle to {out} ...")
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("calib", "eval"):
        shutil.rmtree(out / folder, ignore_errors=True)
    export_onnx(model, out / "model.onnx")
    write_calibration(out)
    eval_files, eval_labels = write_evaluation(out)
    write_job(out)

    print(f"hold-out accuracy (PyTorch):        {accuracy(model, x_val, y_val):.2%} of {len(y_val)}")
    print(f"eval/ accuracy (ONNX Runtime FP32): {onnx_accuracy(out / 'model.onnx', eval_files, eval_labels):.2%} of {len(eval_files)}")
    print(f"model.onnx: {(out / 'model.onnx').stat().st_size / 1024:.0f} KB; done in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
