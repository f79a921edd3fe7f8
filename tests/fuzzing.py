"""Mutations of real small models for fuzzing the loader (used by
tests/test_fuzz_loader.py and bench/fuzz_loader.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
from hypothesis import strategies as st
from onnx import TensorProto

from guiapp.core.errors import ModelError, StudioError
from guiapp.core.model.modelinfo import inspect_model

OK, REFUSED = "loaded", "refused"


class Mutant(bytes):
    """Model bytes with a short repr naming the mutation (not 1.5 MB of bytes)."""

    how: str = ""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes: {self.how}>"


def _mutant(data: bytes, how: str) -> Mutant:
    m = Mutant(data)
    m.how = how
    return m


def seeds(folder: Path) -> list[bytes]:
    """Serialized small real models: the project's demo and built ones."""
    from builders import convnet, opset8_convnet, two_input_net
    from guiapp.core.demo import demo_folder

    folder.mkdir(parents=True, exist_ok=True)
    out = [(demo_folder() / "model.onnx").read_bytes(), convnet(constant_weights=True).SerializeToString()]
    opset8_convnet(folder / "o8.onnx")
    two_input_net(folder / "two.onnx")
    out += [(folder / "o8.onnx").read_bytes(), (folder / "two.onnx").read_bytes()]
    return out


@st.composite
def byte_mutation(draw, models: list[bytes]) -> bytes:
    seed = draw(st.integers(0, len(models) - 1))
    data = bytearray(models[seed])
    kind = draw(st.sampled_from(["flip", "cut", "delete", "insert"]))
    steps = []
    if kind == "flip":
        for _ in range(draw(st.integers(1, 24))):
            i = draw(st.integers(0, len(data) - 1))
            x = draw(st.integers(1, 255))
            data[i] ^= x
            steps.append(f"{i}^{x}")
    elif kind == "cut":
        i = draw(st.integers(0, len(data) - 1))
        data = data[:i]
        steps.append(f"at {i}")
    elif kind == "delete":
        i, n = draw(st.integers(0, len(data) - 1)), draw(st.integers(1, 512))
        del data[i : i + n]
        steps.append(f"{n} at {i}")
    else:
        i = draw(st.integers(0, len(data)))
        extra = draw(st.binary(min_size=1, max_size=64))
        data[i:i] = extra
        steps.append(f"{extra!r} at {i}")
    return _mutant(bytes(data), f"seed {seed}, {kind} {' '.join(steps)}")


@st.composite
def proto_mutation(draw, models: list[bytes]) -> bytes:
    """Valid protobuf, broken ONNX: fields removed or made inconsistent."""
    seed = draw(st.integers(0, len(models) - 1))
    m = onnx.ModelProto()
    m.ParseFromString(models[seed])
    g = m.graph
    kinds = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from([
            "drop_node", "drop_init", "drop_input", "drop_output", "clear_raw", "bad_dims", "bad_type", "no_opset",
            "node_input", "external", "input_rank", "dup_output", "empty_graph", "weird_attr",
        ]))
        kinds.append(kind)
        if kind == "drop_node" and g.node:
            del g.node[draw(st.integers(0, len(g.node) - 1))]
        elif kind == "drop_init" and g.initializer:
            del g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        elif kind == "drop_input" and g.input:
            del g.input[draw(st.integers(0, len(g.input) - 1))]
        elif kind == "drop_output" and g.output:
            del g.output[draw(st.integers(0, len(g.output) - 1))]
        elif kind == "clear_raw" and g.initializer:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            t.ClearField("raw_data")
            t.ClearField("float_data")
        elif kind == "bad_dims" and g.initializer:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            t.dims.append(draw(st.integers(-5, 10**12)))
        elif kind == "bad_type" and g.input:
            g.input[0].type.tensor_type.elem_type = draw(st.integers(-3, 40))
        elif kind == "no_opset":
            del m.opset_import[:]
        elif kind == "node_input" and g.node:
            n = g.node[draw(st.integers(0, len(g.node) - 1))]
            n.input.append(draw(st.text(max_size=12)))
        elif kind == "external" and g.initializer:
            t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
            t.data_location = TensorProto.EXTERNAL
            t.external_data.add(key="location", value=draw(st.sampled_from(["", "/etc/passwd", "../../x", "w.bin", "\0"])))
        elif kind == "input_rank" and g.input:
            shape = g.input[0].type.tensor_type.shape
            del shape.dim[draw(st.integers(0, max(0, len(shape.dim) - 1))):]
            for _ in range(draw(st.integers(0, 6))):
                shape.dim.add().dim_value = draw(st.integers(0, 2**40))
        elif kind == "dup_output" and g.node:
            g.node[-1].output.append(g.node[0].output[0] if g.node[0].output else "x")
        elif kind == "empty_graph":
            m.ClearField("graph")
        elif kind == "weird_attr" and g.node:
            kinds_of_attr = list(onnx.AttributeProto.AttributeType.values())
            g.node[0].attribute.add(name=draw(st.text(max_size=8)), type=draw(st.sampled_from(kinds_of_attr)))
    return _mutant(m.SerializeToString(), f"seed {seed}, {', '.join(kinds)}")


def load(data: bytes, path: Path) -> str:
    """The property: loaded (with a usable summary) or refused with our
    ModelError. Any other exception escapes and fails the run."""
    path.write_bytes(data)
    try:
        info = inspect_model(path)
    except ModelError:
        return REFUSED
    except StudioError as exc:  # a domain error, but the wrong kind for a model file
        raise AssertionError(f"not a ModelError: {type(exc).__name__}: {exc}") from exc
    info.summary_lines()
    info.to_dict()
    return OK
