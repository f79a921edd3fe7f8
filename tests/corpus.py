"""The hostile and odd inputs, generated here (nothing downloaded): models,
images and output situations users run into. Each builder writes into a
folder and returns the path to hand to the tool."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from builders import IR_VERSION, convnet, image_folder, opset8_convnet, picture, save, two_input_net

# ------------------------------------------------------------------ models


def empty_file(d: Path) -> Path:
    p = d / "empty.onnx"
    p.write_bytes(b"")
    return p


def random_bytes(d: Path, seed: int = 0) -> Path:
    p = d / "random.onnx"
    p.write_bytes(np.random.default_rng(seed).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    return p


def truncated(d: Path) -> Path:
    convnet(d / "full.onnx", width=16)
    data = (d / "full.onnx").read_bytes()
    p = d / "truncated.onnx"
    p.write_bytes(data[: int(len(data) * 0.6)])
    return p


def text_renamed(d: Path) -> Path:
    p = d / "notes.onnx"
    p.write_text("This is a README, renamed to .onnx by mistake.\n" * 20)
    return p


def quantized(d: Path, fmt: str, calib: Path) -> Path:
    """QDQ or QOperator, made by our own pipeline."""
    from guiapp.core import run as pipeline
    from guiapp.core.job import CalibrationSettings, EvalSettings, Job, QuantSettings
    from guiapp.core.data.preprocess import preset

    src = d / f"fp32_{fmt}.onnx"
    convnet(src)
    out = d / f"quantized_{fmt}.onnx"
    job = Job(src, out, preset("imagenet", resize="stretch"), CalibrationSettings(folders=(calib,), max_images=4),
              QuantSettings(format=fmt), EvalSettings(latency_runs=1, max_images=2, per_layer_images=0))
    pipeline.quantize(job)
    return out


def dynamic_quantized(d: Path) -> Path:
    """ConvInteger, as onnxruntime.quantization.quantize_dynamic makes it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src = d / "fp32_dyn.onnx"
    convnet(src)
    out = d / "dynamic.onnx"
    quantize_dynamic(str(src), str(out), op_types_to_quantize=["Conv"], weight_type=QuantType.QUInt8)
    return out


def opset8(d: Path) -> Path:
    p = d / "opset8.onnx"
    opset8_convnet(p)
    return p


def _convnet_file(path: Path, **kw) -> Path:
    convnet(path, **kw)
    return path


def fixed_batch(d: Path) -> Path:
    return _convnet_file(d / "batch1.onnx", batch=1)


def nhwc(d: Path) -> Path:
    return _convnet_file(d / "nhwc.onnx", layout="nhwc")


def two_inputs(d: Path) -> Path:
    p = d / "two_inputs.onnx"
    two_input_net(p)
    return p


def no_image_input(d: Path) -> Path:
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["features"], ["y"])], "g", [x], [y]),
                          opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = IR_VERSION
    return save(m, d / "tabular.onnx")


def dynamic_hw(d: Path) -> Path:
    return _convnet_file(d / "dynamic_hw.onnx", hw=("H", "W"))


def constant_weights(d: Path) -> Path:
    return _convnet_file(d / "constants.onnx", constant_weights=True, width=32)


def wrong_output_shape(d: Path) -> Path:
    m = convnet()
    m.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7  # it computes 4
    return save(m, d / "wrong_shape.onnx")


def symbolic_inference_fails(d: Path) -> Path:
    """A com.microsoft op that ONNX Runtime runs but its symbolic shape
    inference does not know: quant_pre_process fails and, left alone, leaves
    sym_shape_infer_temp.onnx and a model-sized .data file in the working directory."""
    m = convnet()
    g = m.graph
    g.node[-1].output[0] = "raw"
    g.node.extend([
        helper.make_node("ExpandDims", ["raw", "axis32"], ["expanded"], domain="com.microsoft", name="expand"),
        helper.make_node("Squeeze", ["expanded", "axis64"], ["logits"], name="squeeze"),
    ])
    g.initializer.extend([numpy_helper.from_array(np.array(1, np.int32), "axis32"),
                          numpy_helper.from_array(np.array([1], np.int64), "axis64")])
    m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return save(m, d / "contrib_op.onnx")


def paddle_style(d: Path) -> Path:
    """As paddle2onnx writes: dynamic dims as dim_value -1, and an opset
    domain ("Paddle") that no node uses."""
    m = convnet()
    for vi in (m.graph.input[0], m.graph.output[0]):
        dim = vi.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = -1
    m.opset_import.append(helper.make_opsetid("Paddle", 1))
    return save(m, d / "paddle.onnx")


def float16(d: Path) -> Path:
    m = convnet()
    for t in m.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    for vi in list(m.graph.input) + list(m.graph.output):
        vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    return save(m, d / "fp16.onnx")


def external_data(d: Path) -> Path:
    m = convnet(width=16)
    folder = d / "ext"
    folder.mkdir()
    onnx.save(m, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="model.weights", size_threshold=0)
    return folder / "model.onnx"


def _with_location(d: Path, name: str, location: str) -> Path:
    """A model whose first weight says it lives at ``location``."""
    m = convnet()
    w = m.graph.initializer[0]
    raw_len = len(numpy_helper.to_array(w).tobytes())
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(raw_len))):
        w.external_data.add(key=k, value=v)
    folder = d / name
    folder.mkdir(exist_ok=True)
    return save(m, folder / "model.onnx")


def external_parent_escape(d: Path) -> Path:
    (d / "secret.bin").write_bytes(b"\0" * 4096)
    return _with_location(d, "escape", "../secret.bin")


def external_absolute(d: Path) -> Path:
    (d / "secret_abs.bin").write_bytes(b"\0" * 4096)
    return _with_location(d, "absolute", str(d / "secret_abs.bin"))


def external_symlink(d: Path) -> Path:
    (d / "secret_link.bin").write_bytes(b"\0" * 4096)
    p = _with_location(d, "symlink", "weights.bin")
    os.symlink(d / "secret_link.bin", p.parent / "weights.bin")
    return p


def over_2gb(d: Path) -> Path:
    """A model with 2 GB + 8 bytes of external weights, sparse on disk."""
    n = 2**29 + 2  # float32: 2 GiB + 8 bytes
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    big = TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[n], data_location=TensorProto.EXTERNAL)
    for k, v in (("location", "big.bin"), ("offset", "0"), ("length", str(n * 4))):
        big.external_data.add(key=k, value=v)
    nodes = [helper.make_node("ReduceSum", ["image"], ["s"], keepdims=0), helper.make_node("Add", ["s", "big"], ["y"])]
    m = helper.make_model(helper.make_graph(nodes, "big", [x], [y], [big]), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = IR_VERSION
    folder = d / "big"
    folder.mkdir()
    with open(folder / "big.bin", "wb") as fh:
        fh.truncate(n * 4)  # sparse: no disk blocks, no memory
    return save(m, folder / "model.onnx")


# ------------------------------------------------------------------ images


def _png_with(d: Path, name: str, mutate) -> Path:
    p = d / name
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(p)
    data = bytearray(p.read_bytes())
    mutate(data)
    p.write_bytes(bytes(data))
    return p


def bad_images(d: Path) -> dict[str, Path]:
    """Files that must be skipped, by what is wrong with them."""
    d.mkdir(parents=True, exist_ok=True)
    good_jpg = d / "_good.jpg"
    picture(np.random.default_rng(0), (64, 48)).save(good_jpg, quality=90)
    jpg = good_jpg.read_bytes()
    good_jpg.unlink()
    out = {}
    (d / "zero.jpg").write_bytes(b"")
    out["0-byte"] = d / "zero.jpg"
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 3])
    out["truncated JPEG"] = d / "truncated.jpg"

    def bad_header_crc(data):
        data[data.index(b"IHDR") + 14] ^= 0xFF

    def bad_idat(data):
        i = data.index(b"IDAT") + 8
        data[i : i + 6] = b"\xff" * 6

    out["PNG with a bad CRC"] = _png_with(d, "crc.png", bad_header_crc)
    out["PNG with damaged pixel data"] = _png_with(d, "idat.png", bad_idat)
    (d / "document.png").write_bytes(b"%PDF-1.4 not an image at all\n" * 40)
    out["non-image with an image extension"] = d / "document.png"
    bomb = d / "bomb.png"
    Image.new("L", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    i = data.index(b"IHDR")
    data[i + 4 : i + 12] = struct.pack(">II", 30000, 30000)
    data[i + 17 : i + 21] = struct.pack(">I", zlib.crc32(bytes(data[i : i + 17])) & 0xFFFFFFFF)
    bomb.write_bytes(bytes(data))
    out["decompression bomb (declared 30000x30000)"] = bomb
    return out


def odd_good_images(d: Path) -> dict[str, Path]:
    """Odd but valid files that must be read (and how they must come out)."""
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    Image.new("CMYK", (20, 20), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    out["CMYK JPEG"] = d / "cmyk.jpg"
    Image.fromarray(np.full((20, 20), 40000, np.uint16)).save(d / "deep.png")
    out["16-bit PNG"] = d / "deep.png"
    Image.new("RGBA", (20, 20), (200, 10, 10, 255)).save(d / "rgba.png")
    out["RGBA PNG"] = d / "rgba.png"
    Image.new("LA", (20, 20), (128, 255)).save(d / "la.png")
    out["LA PNG"] = d / "la.png"
    pal = Image.new("P", (20, 20), 3)
    pal.putpalette([0, 0, 0] * 3 + [0, 200, 0] + [0] * 756)
    pal.save(d / "palette.png")
    out["palette PNG"] = d / "palette.png"
    frames = [Image.new("RGB", (20, 20), c) for c in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(d / "anim.gif", save_all=True, append_images=frames[1:])
    out["animated GIF"] = d / "anim.gif"
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(d / "rotated.jpg", exif=exif, quality=95)
    out["EXIF-rotated JPEG"] = d / "rotated.jpg"
    return out


def many_images(d: Path, n: int = 10_000) -> Path:
    """``n`` tiny PNGs in nested folders (the same bytes: writing is the cost)."""
    img = d / "_one.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(img)
    data = img.read_bytes()
    img.unlink()
    root = d / "many"
    for i in range(n):
        sub = root / f"{i // 1000:02d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"{i:05d}.png").write_bytes(data)
    return root


def nested_with_loop(d: Path) -> Path:
    root = d / "nested"
    image_folder(root / "a" / "b" / "c", 3, seed=3)
    image_folder(root / "a" / "x", 2, seed=4)
    os.symlink(root, root / "a" / "b" / "back_to_root")
    os.symlink(root / "a", root / "a" / "x" / "up")
    return root
