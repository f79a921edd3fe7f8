"""Warnings a run hands to the user, each with a code.

The text is for people and may change; the code is what code matches on
(a target that drops advice about ONNX Runtime, a test that expects a
warning). The report lists them as ``{"code": ..., "text": ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Note:
    code: str  # e.g. "latency.int8_slower"; the part before the dot names the stage that wrote it
    text: str

    def to_dict(self) -> dict:
        return {"code": self.code, "text": self.text}

    @classmethod
    def from_dict(cls, d: dict) -> "Note":
        return cls(str(d["code"]), str(d["text"]))


def texts(notes) -> list[str]:
    """The words of ``notes`` (Note objects or their report dicts)."""
    return [n.text if isinstance(n, Note) else str(n["text"]) for n in notes]


def codes(notes) -> list[str]:
    return [n.code if isinstance(n, Note) else str(n["code"]) for n in notes]
