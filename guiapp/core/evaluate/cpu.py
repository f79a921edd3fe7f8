"""The CPU a latency was measured on: model, the instruction sets INT8 speed
depends on, and the thread count ONNX Runtime uses by default.

INT8 latency differs by CPU more than FP32 does: ONNX Runtime's uint8 x int8
kernels use VNNI dot products (AVX512-VNNI, AVX-VNNI) or AMX tiles when the
CPU has them, and fall back to slower AVX2 code (where ``reduce_range``
matters for accuracy) when it does not. Every latency is reported with this.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

# (name shown to users, /proc/cpuinfo flag), in the order shown.
INT8_FEATURES = (
    ("AVX2", "avx2"),
    ("AVX512-VNNI", "avx512_vnni"),
    ("AVX-VNNI", "avx_vnni"),
    ("AMX-INT8", "amx_int8"),
    ("AMX-TILE", "amx_tile"),
    ("NEON-DOT", "asimddp"),  # Arm: SDOT/UDOT
    ("I8MM", "i8mm"),  # Arm: SMMLA/UMMLA
)
# Flags that give ONNX Runtime an int8 dot product (the fast INT8 path).
DOT_PRODUCT_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"})


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str] | None  # None: not readable on this system
    physical_cores: int

    @property
    def int8_features(self) -> tuple[str, ...]:
        if self.flags is None:
            return ()
        return tuple(name for name, flag in INT8_FEATURES if flag in self.flags)

    @property
    def has_int8_dot_product(self) -> bool | None:
        """Whether ONNX Runtime gets an int8 dot-product instruction (None: unknown)."""
        return None if self.flags is None else bool(self.flags & DOT_PRODUCT_FLAGS)

    def features_text(self) -> str:
        if self.flags is None:
            return "instruction sets unknown"
        return ", ".join(self.int8_features) or "no AVX2/VNNI/AMX"

    def to_dict(self) -> dict:
        return {"cpu": self.model, "int8_features": list(self.int8_features), "physical_cores": self.physical_cores}


def parse_cpuinfo(text: str, allowed: set[int] | None = None) -> CpuInfo:
    """A CpuInfo from the text of /proc/cpuinfo (x86 or Arm).

    ``allowed`` limits the cores counted to the processors this process may
    run on (its affinity); physical cores are distinct (physical id, core id)
    pairs, or processors when the file does not say."""
    model = ""
    flags: set[str] | None = None
    cores: set[tuple[str, str]] = set()
    processor: int | None = None
    physical = core = None

    def close() -> None:
        if processor is not None and (allowed is None or processor in allowed):
            cores.add((physical or "0", core if core is not None else f"p{processor}"))

    for line in text.splitlines() + [""]:
        if not line.strip():
            close()
            processor, physical, core = None, None, None
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            processor = int(value)
        elif key == "physical id":
            physical = value
        elif key == "core id":
            core = value
        elif key in ("model name", "hardware", "cpu model") and not model:
            model = value
        elif key in ("flags", "features") and flags is None:
            flags = set(value.split())
    return CpuInfo(model or platform.processor() or platform.machine(), None if flags is None else frozenset(flags), max(1, len(cores)))


def _affinity() -> set[int] | None:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def current_cpu() -> CpuInfo:
    """This machine's CPU (flags None where /proc/cpuinfo is not available)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return CpuInfo(platform.processor() or platform.machine(), None, max(1, len(_affinity() or ()) or os.cpu_count() or 1))
    return parse_cpuinfo(text, _affinity())


def ort_default_threads(cpu: CpuInfo | None = None) -> int:
    """The intra-op thread count ONNX Runtime picks when none is set: one per
    physical core (its threading documentation)."""
    return (cpu or current_cpu()).physical_cores
