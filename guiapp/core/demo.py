"""The bundled demo: a small RGB shape classifier made by tools/make_demo.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .errors import UserError
from .run import load_job
from .resources import resource_path


def demo_folder() -> Path:
    return resource_path("demo")


def demo_job(out_dir: Path):
    """The demo's job, writing its model and report into ``out_dir``."""
    job_file = demo_folder() / "demo.job.json"
    if not job_file.is_file():
        raise UserError(f"the demo files are missing ({job_file}).", "Reinstall Quantization Studio.")
    job = load_job(job_file)
    out_dir.mkdir(parents=True, exist_ok=True)
    return replace(job, output=out_dir / "demo.int8.onnx", report=out_dir / "demo.report.json")
