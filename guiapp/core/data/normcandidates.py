"""The preprocessings the normalization check tries: every preset in both
channel orders, the user's current setting, and the mistakes people make
with it (channel order swapped, values meant for 0..1 read as pixels or the
reverse, the mean left out). Only mean, std and channel order vary; size,
resize policy and layout stay the user's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .preprocess import PRESETS, PreprocessSpec, preset, same_values


# A normalized pixel beyond this is no network's input: raw 0..255 reaches 255, a training
# script that forgot x/255 before ImageNet's 0..1 mean/std 1,112; raw's ÷ 255 reaches 65,025.
MAX_REACH = 2000.0


@dataclass(frozen=True)
class Candidate:
    key: str  # stable id: "imagenet-rgb", "current", "current-swapped", ...
    label: str  # in words: "imagenet (RGB)", "your setting in BGR order"
    mean: tuple[float, ...]
    std: tuple[float, ...]
    color: str
    current: bool = False  # the user's setting (a preset the user chose is marked too)
    preset: str | None = None  # the preset whose values these are
    undo: bool = False  # the user's values with one usual mistake undone (swapped order, 0..1 vs 0..255)

    def apply(self, spec: PreprocessSpec) -> PreprocessSpec:
        """``spec`` with this candidate's normalization and channel order."""
        return replace(spec, mean=self.mean, std=self.std, color=self.color)

    def values_text(self) -> str:
        return f"{self.color.upper()}, mean {_fmt(self.mean)}, std {_fmt(self.std)}"

    def same_as(self, other: "Candidate") -> bool:
        return self.color == other.color and same_values(self.mean, other.mean) and same_values(self.std, other.std)

    def to_dict(self) -> dict:
        return {"key": self.key, "label": self.label, "color": self.color, "mean": list(self.mean), "std": list(self.std),
                "current": self.current, "preset": self.preset, "undo": self.undo}


def input_reach(c: Candidate) -> float:
    """The largest |normalized pixel| a candidate feeds (pixels 0 and 255)."""
    return max(abs((v - mean) / std) for mean, std in zip(c.mean, c.std) for v in (0.0, 255.0) if std)


def _fmt(values) -> str:
    vals = [f"{v:.6g}" for v in values]
    return vals[0] if len(set(vals)) == 1 else "(" + ", ".join(vals) + ")"


def _other(color: str) -> str:
    return {"rgb": "bgr", "bgr": "rgb"}[color]


def candidates(current: PreprocessSpec) -> list[Candidate]:
    """The user's setting first, then the presets (each in both channel
    orders for a colour model), then variants of the user's setting; each
    distinct normalization once (a variant equal to a preset is the preset)."""
    out: list[Candidate] = []
    gray = current.channels == 1

    def add(c: Candidate) -> None:
        for i, known in enumerate(out):
            if known.same_as(c):
                if c.undo and not known.current:
                    out[i] = replace(known, undo=True)
                return
        out.append(c)

    mine = Candidate("current", "your setting", current.mean, current.std, current.color, current=True)
    for name in PRESETS:
        p = preset(name, current.channels)
        if mine.same_as(Candidate("", "", p.mean, p.std, p.color)):
            mine = replace(mine, label=f"{name} ({p.color.upper()}), your setting", preset=name)
    out.append(mine)
    for name in PRESETS:
        p = preset(name, current.channels)
        add(Candidate(f"{name}-{p.color}", f"{name} ({p.color.upper()})", p.mean, p.std, p.color, preset=name))
        if not gray:
            o = _other(p.color)
            add(Candidate(f"{name}-{o}", f"{name} in {o.upper()} order", p.mean[::-1], p.std[::-1], o, preset=name))
    m, s, c = current.mean, current.std, current.color
    if not gray:
        add(Candidate("current-swapped", f"your setting in {_other(c).upper()} order", m[::-1], s[::-1], _other(c), undo=True))
        add(Candidate("current-swapped-same", f"your numbers as typed, {_other(c).upper()} order", m, s, _other(c),
                      undo=True))
    add(Candidate("current-x255", "your mean/std × 255 (typed in 0..1 units?)", tuple(v * 255 for v in m),
                  tuple(v * 255 for v in s), c, undo=True))
    div = Candidate("current-div255", "your mean/std ÷ 255 (meant for 0..1 images?)", tuple(v / 255 for v in m),
                    tuple(v / 255 for v in s), c, undo=True)
    if input_reach(div) <= MAX_REACH:
        add(div)
    if all(abs(v) < 1e-6 for v in m) and not any(same_values(s, (k,) * len(s)) for k in (1.0, 255.0)):
        # Scaled but not centred: the mean was probably left out.
        add(Candidate("current-centred", "your std with mean 127.5 (centred)", (127.5,) * len(m), s, c))
    return out
