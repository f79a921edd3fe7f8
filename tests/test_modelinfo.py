"""Model inspection on models built here."""

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
import numpy as np

from builders import IR_VERSION, convnet, save
from guiapp.core.errors import ModelError
from guiapp.core.model.modelinfo import inspect_model


def test_nchw_model_summary(tmp_path):
    p = tmp_path / "m.onnx"
    convnet(p, metadata={"classes": "a,b,c,d"})
    info = inspect_model(p)
    ii = info.image_input
    assert (ii.name, ii.layout, ii.channels, ii.height, ii.width, ii.batch) == ("image", "nchw", 3, 32, 32, "N")
    assert info.inputs[0].shape == ("N", 3, 32, 32) and info.inputs[0].dtype == "float32"
    assert info.outputs[0].name == "logits"
    assert info.opset == 13 and info.ir_version == IR_VERSION
    assert dict(info.op_counts)["Conv"] == 2
    # 8*3*9 + 8 + 16*8*9 + 16 + 4*16 + 4
    assert info.parameter_count == 216 + 8 + 1152 + 16 + 64 + 4
    assert info.size_bytes == p.stat().st_size
    assert info.metadata == {"classes": "a,b,c,d"}
    assert not info.is_quantized and info.blockers == ()


def test_nhwc_is_detected_and_can_be_forced(tmp_path):
    p = tmp_path / "m.onnx"
    convnet(p, layout="nhwc", hw=(20, 24))
    ii = inspect_model(p).image_input
    assert (ii.layout, ii.height, ii.width, ii.channels) == ("nhwc", 20, 24, 3)
    assert inspect_model(p, layout="nchw").image_input is None  # dim 1 is 20: not channels


def test_dynamic_height_and_width(tmp_path):
    p = tmp_path / "m.onnx"
    convnet(p, hw=("H", "W"))
    ii = inspect_model(p).image_input
    assert ii.size is None and ii.height == "H"


def test_weights_in_constant_nodes_are_counted(tmp_path):
    p = tmp_path / "m.onnx"
    convnet(p, constant_weights=True)
    assert inspect_model(p).parameter_count == 1460


def test_quantized_model_is_a_blocker(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = IR_VERSION
    info = inspect_model(save(m, tmp_path / "q.onnx"))
    assert info.is_quantized
    assert "already quantized" in info.blockers[0]
    assert info.float_only_ops == ()


def test_no_image_input_is_a_blocker(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 10])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])
    m = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = IR_VERSION
    info = inspect_model(save(m, tmp_path / "v.onnx"))
    assert info.image_input is None
    assert "No input looks like an image" in info.blockers[0] and "x [N, 10]" in info.blockers[0]


def test_ops_without_int8_kernels_are_listed(tmp_path):
    m = convnet()
    m.graph.node.append(helper.make_node("Exp", ["logits"], ["e"], name="exp"))
    m.graph.output[0].name = "e"
    info = inspect_model(save(m, tmp_path / "e.onnx"))
    assert ("Exp", 1) in info.float_only_ops


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty"), (b"hello, I am a text file\n" * 20, "not a valid ONNX model")],
)
def test_unreadable_files(tmp_path, content, message):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        inspect_model(p)


def test_truncated_model_is_reported(tmp_path):
    p = tmp_path / "m.onnx"
    convnet(p)
    data = p.read_bytes()
    for cut in (len(data) // 2, len(data) - 7, 40):
        t = tmp_path / f"cut{cut}.onnx"
        t.write_bytes(data[:cut])
        with pytest.raises(ModelError):
            inspect_model(t)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        inspect_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="not a file"):
        inspect_model(tmp_path)


def test_inspection_does_not_touch_the_file(tmp_path):
    p = tmp_path / "m.onnx"
    convnet(p)
    before = (p.read_bytes(), p.stat().st_mtime_ns)
    inspect_model(p)
    assert (p.read_bytes(), p.stat().st_mtime_ns) == before
