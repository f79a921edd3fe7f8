"""``guiapp check-norm``: which mean, std and channel order the model itself
prefers, against the current setting (the quantize preprocessing flags).

Exit codes: 0 the current setting is in the best group (or no candidate is
clearly better); 3 a clearly better setting exists, named on the last line;
2 bad input.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from .exits import EXIT_BETTER, EXIT_OK, SigintCancels

IMAGES = 32
LABELED_IMAGES = 128


def add_parser(sub, preprocess_flags) -> None:
    from ..core.tasks import TASK_KINDS
    from ..core.tasks.detection_layout import BOX_FORMATS

    p = sub.add_parser(
        "check-norm",
        help="check the preprocessing against the model: run it on your images under every preset and channel order",
        description="Run the model on up to --max-images of your images under each candidate preprocessing (the presets in "
                    "RGB and BGR, 0..255 vs 0..1 scale, your setting and its usual mistakes) and rank them by how "
                    "plausible its outputs are for its task. Exit 0: your setting is in the best group; 3: a clearly "
                    "better one exists (named on the last line); 2: bad input.",
    )
    p.add_argument("model", type=Path)
    p.add_argument("--images", type=Path, action="append", required=True, metavar="DIR", help="image folder (repeatable)")
    preprocess_flags(p)
    g = p.add_argument_group("check")
    g.add_argument("--labels", metavar="CSV|subfolders", help="class labels: the score is then top-1 accuracy")
    g.add_argument("--class-offset", type=int, default=0, metavar="K", help="model index = class index + K")
    g.add_argument("--task", choices=TASK_KINDS, help="what the model does (default: auto, decided from its outputs)")
    g.add_argument("--box-format", choices=BOX_FORMATS, help="detectors: how box values read (default: auto)")
    g.add_argument("--score-threshold", type=float, metavar="S", help="detectors: count boxes from this score on (default 0.25)")
    g.add_argument("--nms-iou", type=float, metavar="T", help="detectors: NMS overlap threshold (default 0.45)")
    g.add_argument("--max-images", type=int, metavar="N",
                   help=f"images to run (default {IMAGES}; {LABELED_IMAGES} with --labels, since accuracy on 32 images is coarse)")
    g.add_argument("--seed", type=int, default=0, metavar="S", help="which images (default 0)")
    g.add_argument("--json", action="store_true", help="print the ranking as JSON")


def _flags(candidate, spec) -> str:
    """The quantize flags that select ``candidate``."""
    from ..core.data.preprocess import preset

    if candidate.preset is not None and candidate.same_as(replace(candidate, **_values(preset(candidate.preset, spec.channels)))):
        return f"--preset {candidate.preset}"
    f = lambda vals: ",".join(f"{v:.6g}" for v in vals)  # noqa: E731
    return f"--mean {f(candidate.mean)} --std {f(candidate.std)} --color {candidate.color}"


def _values(spec) -> dict:
    return {"mean": spec.mean, "std": spec.std, "color": spec.color}


def run(args: argparse.Namespace) -> int:
    from .flags import input_values, labels_from_flag, model_from_flags
    from ..core.data.dataset import list_images
    from ..core.errors import JobError
    from ..core.evaluate.compare import resolve_labels
    from ..core.evaluate.normcheck import CheckInputs, check_normalization
    from ..core.job import EvalSettings
    from ..core.model.feeds import make_feeds
    from .terminal import ProgressBar

    images = args.max_images if args.max_images is not None else (LABELED_IMAGES if args.labels else IMAGES)
    if images < 1:
        raise JobError("--max-images", "must be at least 1")
    info, settings, task, spec = model_from_flags(args, args.model)
    feeds = make_feeds(info, input_values(args.input_value))
    files = list_images(args.images, "image")
    labels = resolve_labels(EvalSettings(folders=tuple(args.images), **labels_from_flag(args)), files) if args.labels else None
    inputs = CheckInputs(args.model, info, task, feeds, spec, files, settings.options_for(task.kind), labels, args.class_offset,
                         images, args.seed)
    bar = ProgressBar()
    with SigintCancels() as cancel:
        try:
            check = check_normalization(inputs, progress=bar, cancel=cancel)
        finally:
            bar.close()
    code = EXIT_BETTER if check.verdict == "worse" else EXIT_OK
    if args.json:
        print(json.dumps(check.to_dict(), indent=2, default=str))
        return code
    print(f"Normalization check: {Path(args.model).name} ({task.kind}), {check.images} images, "
          f"{len(check.ranking)} candidates, {check.seconds:.1f} s")
    if check.ranking:
        print(f"Score: {check.metric} (higher is better; * = your setting)\n")
        print("\n".join(check.table_lines()) + "\n")
    for note in check.notes:
        print(f"note: {note}")
    for path, reason in check.skipped:
        print(f"skipped {path}: {reason}")
    print(check.message)
    if check.suggestion is not None:
        print(check.suggestion_line()[:-1] + f" ({_flags(check.suggestion, spec)})")
    return code
