"""Model inspection: what a model takes and gives, and whether we can quantize it.

Inspection reads the graph without external weights, so it is quick even for
models with gigabytes of external data, and it never modifies the file.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from .exporter import ExporterFacts, read_exporter
from .graphnorm import GraphNormalization, graph_normalization
from .loading import load_proto
from .quantizable import QUANTIZABLE_OP_TYPES, STRUCTURAL_OP_TYPES, is_quantized_op
from .probe import MAX_PROBE_BYTES, RunShapes, probe
from .tensors import ImageInput, TensorInfo, tensor_info
from .nodes import attribute

TWO_GB = 2**31  # one protobuf's limit


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    size_bytes: int  # the .onnx file plus its external data files
    ir_version: int
    opset: int
    producer: str
    doc_string: str
    metadata: dict[str, str]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    image_input: ImageInput | None
    op_counts: tuple[tuple[str, int], ...]  # most frequent first
    parameter_count: int
    quantized_ops: tuple[str, ...]  # quantization ops already present
    float_only_ops: tuple[tuple[str, int], ...]  # compute ops that will stay float
    external_data_files: tuple[str, ...] = ()
    float16: bool = False
    notes: tuple[str, ...] = field(default=())
    input_normalization: tuple[str, ...] = ()  # arithmetic with constants right after the image input
    graph_normalization: GraphNormalization | None = None  # the same, with its values
    nodes: tuple[tuple[str, str], ...] = ()  # (name, op type) of named nodes ONNX Runtime can quantize
    computed_outputs: tuple[TensorInfo, ...] = ()  # outputs with sizes from shape inference, when declared symbolic
    exporter: ExporterFacts = field(default_factory=lambda: ExporterFacts(""))
    run: RunShapes | None = None  # the outputs of one run at a concrete size, when the declaration leaves sizes open

    @property
    def task_outputs(self) -> tuple[TensorInfo, ...]:
        """The outputs with the sizes the model computes: from a run at a
        concrete size, else from shape inference, else as declared (exporters
        with dynamic axes declare ``[batch, 8, anchors]`` or long expressions)."""
        if self.run is not None and self.run.ok:
            return self.run.outputs
        return self.computed_outputs or self.outputs

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) to feed: the model's own, else the size it ran at (the file's metadata or the user's)."""
        ii = self.image_input
        if ii is None:
            return None
        if ii.size is not None:
            return ii.size
        return self.run.size if self.run is not None and self.run.ok else None

    @property
    def sized_input(self) -> ImageInput | None:
        """The image input with :attr:`input_size` filled in (what task layouts are decided at)."""
        ii, size = self.image_input, self.input_size
        if ii is None or size is None or ii.size is not None:
            return ii
        return replace(ii, height=size[0], width=size[1])

    def outputs_text(self) -> list[str]:
        """Each output as a person reads it: concrete shapes at the run's size,
        and which dimensions follow the input."""
        ran = {t.name: t for t in self.task_outputs}
        size = self.input_size
        run = self.run if self.run is not None and self.run.ok else None
        follows_of = dict(zip((t.name for t in run.outputs), run.follows)) if run is not None and run.follows else {}
        lines = []
        for t in self.outputs:
            got = ran.get(t.name, t)
            text = f"{t.name} {got.shape_text}"
            if size is not None and got is not t:
                text += f" at {size[0]}x{size[1]}"
            follows = follows_of.get(t.name, ())
            if follows:
                text += " (" + ", ".join(f"dim {i}" for i in follows) + " follow" + ("s" if len(follows) == 1 else "") + " the input size)"
            lines.append(text)
        return lines

    @property
    def is_quantized(self) -> bool:
        return bool(self.quantized_ops)

    @property
    def node_count(self) -> int:
        return sum(n for _, n in self.op_counts)

    @property
    def extra_inputs(self) -> tuple[TensorInfo, ...]:
        name = self.image_input.name if self.image_input else None
        return tuple(t for t in self.inputs if t.name != name)

    @property
    def blockers(self) -> tuple[str, ...]:
        """Plain-language reasons this model cannot be quantized as it is."""
        out = []
        if self.is_quantized:
            out.append(
                "The model is already quantized (it contains " + ", ".join(self.quantized_ops) + "). "
                "Quantize the original FP32 model instead."
            )
        if self.size_bytes >= TWO_GB:
            out.append(
                f"The model is {self.size_bytes / 1e9:.1f} GB with its external weights. Models over 2 GB are not "
                "supported: quantizing one needs several copies of its weights in memory. Quantize it with "
                "onnxruntime.quantization.quantize_static(..., use_external_data_format=True) on a large machine."
            )
        if self.float16:
            out.append("The model computes in float16. Convert it to float32 first (for example with onnxconverter-common).")
        if self.image_input is None:
            shapes = ", ".join(f"{t.name} {t.shape_text}" for t in self.inputs) or "none"
            out.append(
                "No input looks like an image (rank 4 with 1 or 3 channels, NCHW or NHWC); inputs: "
                f"{shapes}. Quantization Studio calibrates image models."
            )
        return tuple(out)

    def summary_lines(self) -> list[str]:
        """A human-readable summary (the CLI's `inspect` output)."""
        mb = self.size_bytes / 1e6
        lines = [
            f"Model      {self.path}",
            f"Size       {mb:.2f} MB, {self.parameter_count:,} parameters, {self.node_count} nodes",
            f"Format     ONNX IR {self.ir_version}, opset {self.opset}" + (f", producer {self.producer}" if self.producer else ""),
        ]
        for t in self.inputs:
            tag = ""
            if self.image_input and t.name == self.image_input.name:
                ii = self.image_input
                dyn = ii.dynamic_axes
                tag = f"  image, {ii.layout.upper()}, {ii.channels} channel(s)" + (f", dynamic {'/'.join(dyn)}" if dyn else "")
            lines.append(f"Input      {t.name} {t.shape_text} {t.dtype}{tag}")
        ex = self.exporter
        if ex.exporter:
            said = [w for w in (ex.task_claim, ex.size_claim, f"{len(ex.class_names)} classes" if ex.class_names else "") if w]
            lines.append(f"Exported   {ex.exporter}" + (f": {', '.join(said)}" if said else ""))
        if self.run is not None and self.run.ok and self.image_input and self.image_input.size is None:
            lines.append(f"Size       {self.run.size[0]}x{self.run.size[1]} to feed ({self.run.source})")
        dtypes = {t.name: t.dtype for t in self.outputs}
        for t, text in zip(self.outputs, self.outputs_text()):
            lines.append(f"Output     {text} {dtypes[t.name]}")
        ops = ", ".join(f"{op} {n}" for op, n in self.op_counts)
        lines.append(f"Operators  {ops}")
        if self.float_only_ops:
            lines.append("Stay float " + ", ".join(f"{op} {n}" for op, n in self.float_only_ops) + " (no INT8 kernel in ONNX Runtime's quantizer)")
        for k, v in self.metadata.items():
            v = v if len(v) <= 60 else v[:57] + "..."
            lines.append(f"Metadata   {k} = {v}")
        for note in self.notes:
            lines.append(f"Note       {note}")
        for b in self.blockers:
            lines.append(f"Blocker    {b}")
        return lines

    def to_dict(self) -> dict:
        ii = self.image_input
        return {
            "path": str(self.path),
            "size_bytes": self.size_bytes,
            "ir_version": self.ir_version,
            "opset": self.opset,
            "producer": self.producer,
            "metadata": dict(self.metadata),
            "inputs": [{"name": t.name, "shape": list(t.shape) if t.shape else None, "dtype": t.dtype} for t in self.inputs],
            "outputs": [{"name": t.name, "shape": list(t.shape) if t.shape else None, "dtype": t.dtype} for t in self.outputs],
            "image_input": None
            if ii is None
            else {"name": ii.name, "layout": ii.layout, "channels": ii.channels, "height": ii.height, "width": ii.width, "batch": ii.batch},
            "op_counts": dict(self.op_counts),
            "parameter_count": self.parameter_count,
            "is_quantized": self.is_quantized,
            "quantized_ops": list(self.quantized_ops),
            "float_only_ops": dict(self.float_only_ops),
            "external_data_files": list(self.external_data_files),
            "blockers": list(self.blockers),
            "notes": list(self.notes),
            "input_normalization": self.graph_normalization.to_dict() if self.graph_normalization else None,
            "exporter": self.exporter.to_dict(),
            "run": self.run.to_dict() if self.run else None,
            "input_size": list(self.input_size) if self.input_size else None,
        }


def find_image_input(model: onnx.ModelProto, inputs: tuple[TensorInfo, ...], layout: str = "auto") -> ImageInput | None:
    """The first rank-4 float input with 1 or 3 channels, with its layout.

    ``layout`` forces "nchw" or "nhwc"; "auto" detects: the channel axis is the
    one of size 1 or 3, and a leading Transpose(0,3,1,2) marks NHWC when both are.
    """
    for t in inputs:
        if t.shape is None or len(t.shape) != 4 or not t.dtype.startswith("float"):
            continue
        n, d1, d2, d3 = t.shape
        nchw_ok = d1 in (1, 3)
        nhwc_ok = d3 in (1, 3)
        if layout == "nchw":
            chosen = "nchw" if nchw_ok else None
        elif layout == "nhwc":
            chosen = "nhwc" if nhwc_ok else None
        elif nchw_ok and nhwc_ok:
            chosen = "nhwc" if _feeds_nhwc_transpose(model, t.name) else "nchw"
        else:
            chosen = "nchw" if nchw_ok else "nhwc" if nhwc_ok else None
        if chosen == "nchw":
            return ImageInput(t.name, "nchw", int(d1), d2, d3, n)
        if chosen == "nhwc":
            return ImageInput(t.name, "nhwc", int(d3), d1, d2, n)
    return None


def _feeds_nhwc_transpose(model: onnx.ModelProto, name: str) -> bool:
    for node in model.graph.node:
        if name in node.input and node.op_type == "Transpose":
            perm = attribute(node, "perm")
            return perm == [0, 3, 1, 2]
    return False


def input_normalization_ops(model: onnx.ModelProto, name: str, layout: str = "nchw", channels: int = 3) -> tuple[str, ...]:
    """The op types of the normalization the model applies to its input
    itself (see :mod:`guiapp.core.model.graphnorm` for the values)."""
    gn = graph_normalization(model, name, layout, channels)
    return gn.ops if gn else ()


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return 0


def _tensor_elements(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n


def inspect_model(path: str | os.PathLike, layout: str = "auto", size: tuple[int, int] | None = None) -> ModelInfo:
    """Inspect ``path`` (read-only). Raises ModelError when it cannot be read.
    ``size`` (height, width): the input size to run a model whose size is
    open at (default: the exporter's stated size, when there is one)."""
    path = Path(path)
    model = load_proto(path)
    g = model.graph
    init_names = {i.name for i in g.initializer}
    inputs = tuple(tensor_info(vi) for vi in g.input if vi.name not in init_names)
    outputs = tuple(tensor_info(vi) for vi in g.output)

    op_counter = Counter(node.op_type for node in g.node)
    params = sum(_tensor_elements(t) for t in g.initializer)
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                    params += _tensor_elements(a.t)

    quantized = tuple(sorted(op for op in op_counter if is_quantized_op(op)))
    float_only = tuple(
        (op, n)
        for op, n in op_counter.most_common()
        if op not in QUANTIZABLE_OP_TYPES and op not in STRUCTURAL_OP_TYPES and not is_quantized_op(op)
    )
    # Only domains that nodes use: paddle2onnx declares a "Paddle" domain no node uses.
    used_domains = {n.domain for n in g.node}
    custom = tuple(sorted(d for d in used_domains if d not in ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")))

    from .external import external_files

    ext = external_files(model)

    float16 = any(t.dtype == "float16" for t in inputs) or _mostly_float16(g)
    notes = []
    if custom:
        notes.append("The model uses custom operator domains (" + ", ".join(custom) + "): ONNX Runtime needs their library to run it.")
    if any(n.op_type in ("If", "Loop", "Scan") for n in g.node):
        notes.append("The model has control flow (If/Loop/Scan); nodes inside its subgraphs are not quantized.")
    image = find_image_input(model, inputs, layout)
    gnorm = graph_normalization(model, image.name, image.layout, image.channels) if image else None
    normalization = gnorm.ops if gnorm else ()
    if gnorm:
        notes.append(f"The model normalizes its input itself: {gnorm.describe()}. {gnorm.advice()}")
    if image is not None and image.fixed_batch is not None:
        notes.append(f"The batch size is fixed to {image.fixed_batch}; images are fed {image.fixed_batch} at a time.")
    computed = _computed_outputs(model, image, outputs)
    dims = tuple(d for t in inputs for d in (t.shape or ()) if isinstance(d, str))
    exporter = read_exporter(model.producer_name, model.producer_version, {p.key: p.value for p in model.metadata_props}, dims)
    run = _run_at_size(path, image, inputs, outputs, size, exporter, size_bytes=size_total(path, ext))
    if run is not None and not run.ok:
        notes.append(f"The model does not run at {run.size[0]}x{run.size[1]} ({run.source}): {run.error}. Choose the input size.")
    return ModelInfo(
        path=path,
        size_bytes=size_total(path, ext),
        ir_version=int(model.ir_version),
        opset=default_opset(model),
        producer=" ".join(p for p in (model.producer_name, model.producer_version) if p),
        doc_string=model.doc_string,
        metadata={p.key: p.value for p in model.metadata_props},
        inputs=inputs,
        outputs=outputs,
        image_input=image,
        op_counts=tuple(op_counter.most_common()),
        parameter_count=params,
        quantized_ops=quantized,
        float_only_ops=float_only,
        external_data_files=tuple(ext),
        float16=float16,
        notes=tuple(notes),
        input_normalization=normalization,
        graph_normalization=gnorm,
        nodes=tuple((n.name, n.op_type) for n in g.node if n.name and n.op_type in QUANTIZABLE_OP_TYPES),
        computed_outputs=computed,
        exporter=exporter,
        run=run,
    )


def size_total(path: Path, external: list[str]) -> int:
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in external if (path.parent / f).is_file())


def _run_at_size(path: Path, image: ImageInput | None, inputs, outputs, size, exporter: ExporterFacts,
                 size_bytes: int) -> RunShapes | None:
    """Run the model once when its outputs' sizes are open and a size is known:
    the model's own, the one asked, or the one the exporter states."""
    if image is None or size_bytes > MAX_PROBE_BYTES:
        return None
    open_outputs = any(t.shape is None or any(not isinstance(d, int) for d in t.shape[1:]) for t in outputs)
    if image.size is not None:
        return probe(path, image, inputs, outputs, image.size, "the model") if open_outputs else None
    if size is not None:
        return probe(path, image, inputs, outputs, tuple(size), "chosen")
    if exporter.size is not None:
        return probe(path, image, inputs, outputs, exporter.size, f"{exporter.size_claim} in the file's metadata")
    return None


def _computed_outputs(model: onnx.ModelProto, image: ImageInput | None, outputs: tuple[TensorInfo, ...]) -> tuple[TensorInfo, ...]:
    """Output sizes from ONNX shape inference at batch 1 and the image's fixed
    size, when an output declares a symbolic size past its batch axis; the
    batch axis keeps its declaration. Empty when not needed or not possible."""
    if image is None or image.size is None:
        return ()
    if all(t.shape is not None and all(isinstance(d, int) for d in t.shape[1:]) for t in outputs):
        return ()
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name == image.name:
            d = vi.type.tensor_type.shape.dim[0]
            if not d.HasField("dim_value"):
                d.Clear()
                d.dim_value = 1
    try:
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is a nicety here
        return ()
    found = {vi.name: tensor_info(vi) for vi in inferred.graph.output}
    out = []
    for t in outputs:
        c = found.get(t.name)
        if c is None or c.shape is None or t.shape is None or len(c.shape) != len(t.shape):
            return ()
        out.append(TensorInfo(t.name, (t.shape[0], *c.shape[1:]), t.dtype))
    return tuple(out)


def _mostly_float16(g: onnx.GraphProto) -> bool:
    f16 = sum(1 for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    f32 = sum(1 for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT)
    return f16 > f32
