"""RKNN-Toolkit2 worker: runs with the toolkit's own Python, never in the app.

Standalone on purpose (no import of guiapp): the app starts it as
``PYTHON rknn_worker.py`` with its working directory in a temporary folder
(the toolkit writes ./snapshot and friends there), writes one JSON job on
stdin and reads JSON lines on stdout:

    {"progress": {"phase": "build", "done": 3, "total": 15, "message": "Quantizating"}}
    {"log": "W build: ..."}
    {"result": {...}}   or   {"error": "...", "trace": "..."}

The toolkit prints to stdout and writes native logs to fd 1, so the JSON
channel is a private copy of fd 1 and fd 1 itself is pointed at stderr.
The toolkit has no cancel: the app terminates this process.

Jobs: ``{"probe": true}`` reports the toolkit's version and the Python's;
otherwise a build (see ``build``).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import time
import traceback

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Channel:
    """JSON lines on a private copy of stdout."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)  # print() and native writes from the toolkit go to stderr
        sys.stdout = sys.stderr

    def send(self, **message) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()


def probe() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": platform.machine(), "system": platform.system()}
    try:
        out["rknn_toolkit2"] = version("rknn-toolkit2")
    except PackageNotFoundError:
        out["rknn_toolkit2"] = None
    return out


def hook_progress(channel: Channel, phase: list) -> None:
    """Every tqdm bar the toolkit draws becomes progress messages (at most
    five a second per bar, and its end)."""
    from tqdm import std

    original_update, original_close = std.tqdm.update, std.tqdm.close

    def emit(bar, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - getattr(bar, "_guiapp_t", 0.0) < 0.2:
            return
        bar._guiapp_t = now
        desc = (bar.desc or "").strip().rstrip(":").strip()
        desc = re.sub(r"^[IWE] ", "", desc)
        total = int(bar.total or 0)
        channel.send(progress={"phase": phase[0], "done": int(bar.n), "total": total, "message": desc})

    def update(self, n=1):
        result = original_update(self, n)
        emit(self)
        return result

    def close(self):
        if not getattr(self, "disable", False) and getattr(self, "total", None):
            emit(self, force=True)
        return original_close(self)

    std.tqdm.update, std.tqdm.close = update, close


def hook_log(channel: Channel, hide: str = "") -> None:
    """The toolkit's logger (INFO and up) becomes log messages; lines naming
    ``hide`` (the run's temporary folder, deleted afterwards) are left out."""
    import logging

    class Forward(logging.Handler):
        def emit(self, record):
            try:
                text = _ANSI.sub("", record.getMessage()).strip()
            except Exception:  # noqa: BLE001 - a broken log record must not end the build
                return
            if text and "it/s]" not in text and not (hide and hide in text):
                level = "E" if record.levelno >= logging.ERROR else "W" if record.levelno >= logging.WARNING else "I"
                channel.send(log=f"{level} {text}")

    logger = logging.getLogger("rknnLogger")
    if not any(type(h).__name__ == "Forward" for h in logger.handlers):
        logger.addHandler(Forward(logging.INFO))


def check(ret, what: str) -> None:
    if ret not in (0, None):
        raise RuntimeError(f"{what} failed (the toolkit returned {ret}; its log above says why)")


def parse_error_analysis(text: str) -> list[dict]:
    """Rows of accuracy_analysis's error_analysis.txt: ``[Op] name  cos | euc
    cos | euc`` (entire, then single). Fused layers have no values."""
    rows = []
    pattern = re.compile(r"^\[(?P<op>[^\]]+)\]\s+(?P<name>\S+)\s*(?P<rest>.*)$")
    for line in text.splitlines():
        m = pattern.match(line.strip())
        if not m:
            continue
        nums = re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|nan|inf", m.group("rest"))
        values = [float(v) for v in nums]
        row = {"op_type": m.group("op"), "name": m.group("name"), "cosine": None, "euclidean": None,
               "cosine_single": None, "euclidean_single": None}
        if len(values) >= 2:
            row["cosine"], row["euclidean"] = values[0], values[1]
        if len(values) >= 4:
            row["cosine_single"], row["euclidean_single"] = values[2], values[3]
        rows.append(row)
    return rows


def snapshot_sqnr(folder: str) -> dict:
    """SQNR (dB) of every dumped tensor: golden (float) vs simulator."""
    import numpy as np

    names = {}
    mapping = os.path.join(folder, "map_name_to_file.txt")
    if os.path.isfile(mapping):
        for line in open(mapping, encoding="utf-8"):
            parts = line.split()
            if len(parts) == 2 and parts[1].endswith(".txt"):
                names[parts[0]] = parts[1][:-4] + ".npy"
    out = {}
    for name, file in names.items():
        g, s = os.path.join(folder, "golden", "npy", file), os.path.join(folder, "simulator", "npy", file)
        if not (os.path.isfile(g) and os.path.isfile(s)):
            continue
        a, b = np.load(g).astype(np.float64).ravel(), np.load(s).astype(np.float64).ravel()
        if a.size != b.size:
            continue
        noise = float(np.sum((a - b) ** 2))
        signal = float(np.sum(a**2))
        out[name] = [signal, noise]
    return out


def per_layer(rknn, inputs: list, folder: str, channel: Channel, phase: list) -> list[dict]:
    """accuracy_analysis on each input; its snapshot (hundreds of MB per
    image) is read and deleted before the next."""
    rows: dict[str, dict] = {}
    energy: dict[str, list] = {}
    for i, path in enumerate(inputs):
        phase[0] = "analyse"
        channel.send(progress={"phase": "analyse", "done": i, "total": len(inputs), "message": "accuracy analysis"})
        out_dir = os.path.join(folder, f"snapshot{i}")
        check(rknn.accuracy_analysis(inputs=[path], output_dir=out_dir), "accuracy_analysis")
        with open(os.path.join(out_dir, "error_analysis.txt"), encoding="utf-8") as fh:
            for row in parse_error_analysis(fh.read()):
                keep = rows.setdefault(row["name"], {**row, "n": 0})
                if row["cosine"] is not None:
                    if keep["n"]:  # mean over images
                        for k in ("cosine", "euclidean", "cosine_single", "euclidean_single"):
                            if row[k] is not None and keep[k] is not None:
                                keep[k] = (keep[k] * keep["n"] + row[k]) / (keep["n"] + 1)
                    else:
                        keep.update(row)
                    keep["n"] += 1
        for name, (sig, noise) in snapshot_sqnr(out_dir).items():
            acc = energy.setdefault(name, [0.0, 0.0])
            acc[0] += sig
            acc[1] += noise
        shutil.rmtree(out_dir, ignore_errors=True)
    import math

    out = []
    for name, row in rows.items():
        sig, noise = energy.get(name, (0.0, 0.0))
        sqnr = None
        if name in energy and sig > 0:
            sqnr = 10 * math.log10(sig / noise) if noise > 0 else 150.0
        row.pop("n", None)
        out.append({**row, "sqnr_db": sqnr})
    return out


def simulate(rknn, pixels_path: str, count: int, out_dir: str, channel: Channel) -> dict:
    """Run the first ``count`` images of the [N, H, W, C] uint8 array through
    the simulator; output k is written as out_dir/output_k.npy, [count, *its shape]."""
    import numpy as np

    pixels = np.load(pixels_path, mmap_mode="r")
    n = min(count, pixels.shape[0])
    stores = None
    t0 = time.perf_counter()
    for i in range(n):
        outs = rknn.inference(inputs=[np.ascontiguousarray(pixels[i : i + 1])], data_format="nhwc")
        if outs is None:
            raise RuntimeError(f"the simulator returned nothing for image {i}")
        if stores is None:
            stores = [
                np.lib.format.open_memmap(os.path.join(out_dir, f"output_{k}.npy"), mode="w+", dtype=np.float32, shape=(n, *o.shape))
                for k, o in enumerate(outs)
            ]
        for store, o in zip(stores, outs):
            store[i] = o
        channel.send(progress={"phase": "simulate", "done": i + 1, "total": n, "message": "PC simulator"})
    for s in stores or []:
        s.flush()
    return {
        "images": n,
        "outputs": [os.path.join(out_dir, f"output_{k}.npy") for k in range(len(stores or []))],
        "ms_per_image": (time.perf_counter() - t0) * 1000 / max(n, 1),
    }


def build(job: dict, channel: Channel) -> dict:
    phase = ["load"]
    hook_progress(channel, phase)
    t0 = time.perf_counter()
    from rknn.api import RKNN

    hook_log(channel, job["work"])
    channel.send(log=f"I RKNN-Toolkit2 loaded in {time.perf_counter() - t0:.1f} s")
    rknn = RKNN(verbose=False)
    hook_log(channel, job["work"])
    check(rknn.config(
        mean_values=job["mean_values"], std_values=job["std_values"], quant_img_RGB2BGR=job["quant_img_RGB2BGR"],
        target_platform=job["target_platform"], quantized_algorithm=job["quantized_algorithm"],
        quantized_method=job["quantized_method"],
    ), "config")
    check(rknn.load_onnx(model=job["model"], inputs=job.get("inputs"), input_size_list=job.get("input_size_list")), "load_onnx")
    phase[0] = "build"
    t = time.perf_counter()
    check(rknn.build(do_quantization=True, dataset=job["dataset"]), "build")
    build_s = time.perf_counter() - t
    check(rknn.export_rknn(job["output"]), "export_rknn")
    result = {"build_seconds": build_s, "rknn_toolkit2": probe()["rknn_toolkit2"]}
    # The simulator cannot load a saved .rknn: analyse and evaluate now.
    result["per_layer"] = per_layer(rknn, job.get("analysis_inputs") or [], job["work"], channel, phase)
    phase[0] = "simulate"
    check(rknn.init_runtime(), "init_runtime (PC simulator)")
    if job.get("eval_pixels"):
        result.update(simulate(rknn, job["eval_pixels"], job["eval_count"], job["work"], channel))
    rknn.release()
    return result


def main() -> int:
    # The script's folder (the app's own modules, one of them named rknn.py)
    # must not shadow the toolkit's packages.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    channel = Channel()
    try:
        job = json.loads(sys.stdin.read() or "{}")
        channel.send(result=probe() if job.get("probe") else build(job, channel))
        return 0
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the app as text
        lines = [line for line in _ANSI.sub("", str(exc)).strip().splitlines() if line.strip()]
        text = lines[-1].strip() if lines else type(exc).__name__  # the toolkit puts its traceback in the message
        kind = type(exc).__name__
        channel.send(error=(text if text.startswith(kind) else f"{kind}: {text}")[:2000], trace=traceback.format_exc()[-4000:])
        return 1


if __name__ == "__main__":
    sys.exit(main())
