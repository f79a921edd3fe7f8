"""The normalization check on the real models: the scores per candidate, the
verdict for the specs' setting and for each usual mistake, and the time
against the obvious alternative (decoding every image again per candidate).

    python bench/normcheck.py [--assets ../shared/assets] [--models a,b] [--markdown]

Prints the CPU and the load average before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from guiapp.core.data.dataset import list_images, seeded_order  # noqa: E402
from guiapp.core.model.feeds import make_feeds  # noqa: E402
from guiapp.core.model.modelinfo import inspect_model  # noqa: E402
from guiapp.core.data.normcandidates import candidates  # noqa: E402
from guiapp.core.evaluate.normcheck import CheckInputs, check_normalization  # noqa: E402
from guiapp.core.evaluate.sessions import make_session  # noqa: E402
from guiapp.core.context import resolve_spec  # noqa: E402
from guiapp.core.data.preprocess import PreprocessSpec, load_tensor  # noqa: E402
from guiapp.core.tasks import TaskSettings, detect_task  # noqa: E402

MODELS = ("squeezenet1.1", "mobilenetv2_1.0_224", "squeezenet1.0_nhwc", "mnist", "ultraface_rfb320")


def cpu() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = next(l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name"))
        flags = next(l.split(":", 1)[1].split() for l in text.splitlines() if l.startswith("flags"))
        vnni = [f for f in flags if f in ("avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16")]
        return f"{name}, {os.cpu_count()} cores, {' '.join(vnni) or 'no VNNI'}"
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def spec_of(entry: dict) -> PreprocessSpec:
    pp = entry["preprocess"]
    kw = {"resize": "shorter", "resize_shorter": 256} if pp["resize"].startswith("shorter") else {"resize": "stretch"}
    return PreprocessSpec(mean=tuple(pp["mean_pixel"]), std=tuple(pp["std_pixel"]), color=pp["color"].lower(), **kw)


def mistakes(s: PreprocessSpec) -> dict[str, PreprocessSpec]:
    out = {"specs.json": s}
    if s.channels == 3:
        out["channel order swapped"] = replace(s, color="bgr" if s.color == "rgb" else "rgb")
    out["0..1 where 0..255 expected"] = replace(s, mean=tuple(v * 255 for v in s.mean), std=tuple(v * 255 for v in s.std))
    out["0..255 where 0..1 expected"] = replace(s, mean=tuple(v / 255 for v in s.mean), std=tuple(v / 255 for v in s.std))
    if any(s.mean):
        out["mean left out"] = replace(s, mean=(0.0,) * s.channels)
    return out


def naive_seconds(model: Path, info, spec: PreprocessSpec, files: list[Path]) -> float:
    """Every candidate decodes and resizes every image again (load_tensor), then runs."""
    session = make_session(model)  # the plain model: the check's extra logit outputs cost next to nothing
    names = [o.name for o in session.get_outputs()]
    feeds = make_feeds(info, {})
    fixed = info.image_input.fixed_batch
    batch = fixed or 16
    t = time.perf_counter()
    for c in candidates(spec):
        s = c.apply(spec)
        tensors = [load_tensor(f, s) for f in files]
        for i in range(0, len(tensors), batch):
            chunk = tensors[i:i + batch]
            chunk += [chunk[-1]] * ((batch - len(chunk)) if fixed else 0)
            session.run(names, feeds(np.stack(chunk)))
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assets", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "assets")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--no-naive", action="store_true", help="skip the decode-per-candidate comparison")
    args = ap.parse_args()
    specs = json.loads((args.assets / "models" / "specs.json").read_text())
    print(f"CPU: {cpu()}; load average at start: {load()}\n")
    verdicts = []
    for name in args.models.split(","):
        entry = specs[name]
        model = args.assets / entry["file"]
        info = inspect_model(model)
        task = detect_task(info)
        images = {"mnist": "mnist/images", "ultraface_rfb320": "photos"}.get(name, "imagenet/images")
        files = list_images([args.assets / images])
        right = spec_of(entry)
        for what, s in mistakes(right).items():
            spec = resolve_spec(s, info)
            c = check_normalization(CheckInputs(model, info, task, make_feeds(info, {}), spec, files,
                                                TaskSettings().options_for(task.kind)))
            if what == "specs.json":
                print(f"### {name} ({task.kind}, {c.images} images; score: {c.metric})\n")
                print("| group | score | candidate | order | mean | std |\n|---:|---:|---|---|---|---|")
                for r in c.ranking:
                    k = r.candidate
                    mark = " **(specs.json)**" if k.current else ""
                    nums = lambda v: ", ".join(f"{x:.6g}" for x in (v if len(set(v)) > 1 else v[:1]))  # noqa: E731
                    print(f"| {r.group} | {r.score:.3f} | {k.label}{mark} | {k.color.upper()} | {nums(k.mean)} | {nums(k.std)} |")
                print()
                if not args.no_naive:
                    naive = naive_seconds(model, info, spec, seeded_order(files, 0)[:32])
                    print(f"time: check {c.seconds:.2f} s (decode once, {len(c.ranking)} candidates) vs decode per "
                          f"candidate {naive:.2f} s (inference only, no scoring): {naive / c.seconds:.2f}x; load {load()}\n")
            sug = c.suggestion.label if c.suggestion else "-"
            conf = f"{c.confidence:.3f}" if c.confidence is not None else "-"
            cur = c.current
            verdicts.append(f"| {name} | {what} | {c.verdict} | {cur.group} | {cur.score:.3f} | {c.best.score:.3f} | {conf} | "
                            f"{sug} | {c.seconds:.1f} |")
    print("| model | setting | verdict | group | score | best score | confidence | suggestion | s |")
    print("|---|---|---|---:|---:|---:|---:|---|---:|")
    print("\n".join(verdicts))
    print(f"\nload average at the end: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
