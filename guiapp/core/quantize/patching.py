"""Trials without ONNX Runtime's quantizer: a QDQ graph it wrote, with its
activation scales rewritten for other ranges.

ONNX Runtime's quantizer stays the one writer of QDQ structure. In a QDQ
graph, the activation ranges decide only values: each quantized activation
``T`` carries the initializers ``T_scale`` and ``T_zero_point`` (computed
from ``T``'s range by ``compute_scale_zp``), and each int32 bias depends on
its layer's input scale (``bias / (input_scale * weight_scale)``). Which
tensors get Q/DQ pairs depends on the graph, the settings and which tensors
have a range, never on the range values. So a graph the quantizer wrote for
one strategy becomes the graph it would write for another by rewriting
those initializers with the quantizer's own functions, in place (same
names, same order, same encoding).

Exactness is checked, not assumed: before a written graph serves as a
base, rewriting it for the very ranges it was written with must reproduce
every touched initializer byte for byte; a graph where that fails (or that
holds something this module does not know how to recompute: float16 biases,
a weight scale the quantizer may have raised for an int32 bias) is never
patched, and the quantizer runs instead. tests/test_patched_trials.py
compares patched graphs with fresh quantizer runs, whole files.

A patch reads only the ranges of the tensors it rewrites (and those the
quantizer derives them from), so a search computes a new strategy's ranges
for those alone (MobileNetV2: 66 of 103 tensors; squeezenet1.1: 36 of 66).

A layer sent back to float is not patched: the quantizer then changes its
neighbours too (on MobileNetV2, excluding a Conv brings its Clip back as a
float node and drops the graph input's Q/DQ when that Conv was its only
reader; excluding a Clip adds a Q/DQ pair on the Conv output before it), so
it writes each new set of float layers itself. Changes of weights
(per-channel, equalization, bias correction) also go to the quantizer. There
it quantizes again only the weights it has not seen with the same settings
(weightmemo.py): a new set of float layers costs it half as much.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from .ortquant import quantizer_arguments
from ..model.nodes import attribute

KEEP_WRITTEN = 3  # written graphs kept as bases (a search re-uses one per stage)
MAX_BYTES = 512 * 2**20  # ... and at most this much of them
BIAS_MARGIN = 1.01  # an int32 bias scale this close to the smallest valid one may have moved its weight scale


@dataclass(frozen=True)
class ActivationSite:
    tensor: str  # the tensor whose range the scale comes from
    scale: int  # index of its scale initializer in graph.initializer
    zero_point: int


@dataclass(frozen=True)
class BiasSite:
    quantized: int  # index of the int32 bias initializer
    scale: int  # index of the bias scale initializer
    input_scale: str  # name of the layer's input scale initializer (an activation site's)
    weight_scale: np.ndarray  # the layer's weight scale as written (weights do not change)
    bias: np.ndarray  # the FP32 bias
    beta: float  # Gemm's beta (1 for other layers)


@dataclass
class PatchPlan:
    """Where a written graph depends on the activation ranges."""

    activations: list[ActivationSite]
    biases: list[BiasSite]


# ---------------------------------------------------------------- ONNX Runtime's own parameters


def adjusted_ranges(fp32: onnx.ModelProto, ranges: dict, args: dict) -> dict:
    """The ranges as ONNX Runtime's QDQ quantizer adjusts them before use
    (``BaseQuantizer.adjust_tensor_ranges``): a quantized Relu or Clip's only
    input takes its output's range; a quantized Softmax's output is [0, 1]."""
    out = {n: (np.array(lo, dtype=np.float32), np.array(hi, dtype=np.float32)) for n, (lo, hi) in ranges.items()}
    readers: dict[str, int] = {}
    for node in fp32.graph.node:
        for name in node.input:
            if name:
                readers[name] = readers.get(name, 0) + 1
    ops, excluded = set(args["op_types_to_quantize"]), set(args["nodes_to_exclude"])
    for node in fp32.graph.node:
        if node.op_type not in ops or node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in excluded:
            continue
        if node.op_type in ("Clip", "Relu"):
            if readers.get(node.input[0]) == 1 and node.input[0] in out and node.output[0] in out:
                out[node.input[0]] = out[node.output[0]]
        elif node.op_type == "Softmax":
            out[node.output[0]] = (np.float32(0.0), np.float32(1.0))
    return out


def activation_tensors(name: str, adjusted: dict, args: dict) -> tuple[onnx.TensorProto, onnx.TensorProto] | None:
    """``name``'s scale and zero-point initializers as the quantizer writes
    them (``QDQQuantizer.calc_quant_params`` and ``_make_scale_zp_initializers``);
    None for a case not reproduced here."""
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qtype = args["activation_type"].tensor_type
    symmetric = args["extra_options"]["ActivationSymmetric"]
    rmin, rmax = adjusted[name]
    qmin, qmax = get_qmin_qmax_for_qType(qtype, reduce_range=False, symmetric=symmetric)
    zero, scale = compute_scale_zp(rmin, rmax, qmin, qmax, symmetric, None)
    zero, scale = zero.squeeze(), scale.squeeze()
    if scale.dtype != np.float32:
        return None
    return (onnx.helper.make_tensor(name + "_scale", onnx.TensorProto.FLOAT, scale.shape, scale.ravel().tolist()),
            onnx.helper.make_tensor(name + "_zero_point", qtype, zero.shape, zero.ravel().tolist()))


def bias_tensors(site: BiasSite, input_scale: np.ndarray, names: tuple[str, str], dims) -> tuple[onnx.TensorProto, onnx.TensorProto]:
    """The int32 bias and its scale as the quantizer writes them
    (``BaseQuantizer.quantize_bias_static_impl``)."""
    bias, beta = site.bias, site.beta
    if beta == 0:
        bias, beta = np.zeros_like(bias), 1.0
    bias_scale = input_scale * site.weight_scale * beta
    q = (np.asarray(bias, dtype=np.float64) / np.asarray(bias_scale, dtype=np.float64)).round()
    q = np.clip(q, np.float64(np.iinfo(np.int32).min), np.float64(np.iinfo(np.int32).max)).astype(np.int32)
    scale = np.asarray(bias_scale, dtype=bias.dtype).reshape(-1)
    return (numpy_helper.from_array(np.asarray(q, dtype=np.int32).reshape(dims), names[0]),
            numpy_helper.from_array(scale, names[1]))


def bias_scale_too_small(site: BiasSite, input_scale: np.ndarray) -> bool:
    """True when the quantizer may raise the layer's weight scale so that its
    int32 bias fits (``_adjust_weight_scale_for_int32_bias``): such a layer's
    weights would change, so the quantizer must write it. With a margin: a
    false alarm only costs a quantizer run."""
    qrange = np.float64(np.iinfo(np.int32).max) - np.float64(np.iinfo(np.int32).min + 1)
    b = np.asarray(site.bias, dtype=np.float64)
    w = np.asarray(site.weight_scale, dtype=np.float64)
    if w.size == 1:
        smallest = 1.0001 * 2.0 * max(abs(min(b.min(initial=0.0), 0.0)), abs(max(b.max(initial=0.0), 0.0))) / qrange
    else:
        smallest = 1.0001 * 2.0 * np.abs(b) / qrange
    candidate = np.float64(input_scale.item()) * w
    return bool(np.any(candidate < smallest * BIAS_MARGIN))


# ---------------------------------------------------------------- the plan of a written graph


@dataclass(frozen=True)
class _Graph:
    """A written graph, indexed."""

    graph: onnx.GraphProto
    index: dict  # initializer name -> position
    producers: dict  # tensor name -> the node that writes it

    @classmethod
    def of(cls, model: onnx.ModelProto) -> "_Graph":
        g = model.graph
        return cls(g, {t.name: i for i, t in enumerate(g.initializer)}, {o: n for n in g.node for o in n.output})

    def dequantized(self, name: str):
        """The DequantizeLinear node that writes ``name``, or None."""
        node = self.producers.get(name)
        return node if node is not None and node.op_type == "DequantizeLinear" else None


def make_plan(written: onnx.ModelProto, fp32: onnx.ModelProto, adjusted: dict) -> PatchPlan | None:
    """Where ``written`` depends on the ranges, or None when some of it
    cannot be recomputed here."""
    w = _Graph.of(written)
    sites = _activation_sites(w, adjusted)
    if sites is None:
        return None
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    fp32_inits = {t.name: t for t in fp32.graph.initializer}
    biases = []
    for node in w.graph.node:
        for k, name in enumerate(node.input):
            dq = w.dequantized(name)
            if dq is None or dq.input[0] not in w.index or w.graph.initializer[w.index[dq.input[0]]].data_type != onnx.TensorProto.INT32:
                continue
            site = _bias_site(w, node, k, sites, (fp32_nodes.get(node.name), fp32_inits))
            if site is None:
                return None
            biases.append(site)
    return PatchPlan(list(sites.values()), biases)


def _activation_sites(w: _Graph, adjusted: dict) -> dict[str, ActivationSite] | None:
    """The scale and zero point of every activation QuantizeLinear, by scale
    name (tensors that share their input's parameters share its site)."""
    sites: dict[str, ActivationSite] = {}
    for node in w.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in w.index:
            continue  # a weight's pair (AddQDQPairToWeight) does not depend on the ranges
        if len(node.input) < 3 or not node.input[1].endswith("_scale"):
            return None
        tensor = node.input[1][: -len("_scale")]
        if node.input[2] != tensor + "_zero_point" or tensor not in adjusted or node.input[2] not in w.index:
            return None
        sites[node.input[1]] = ActivationSite(tensor, w.index[node.input[1]], w.index[node.input[2]])
    return sites


def _bias_site(w: _Graph, node, k: int, sites: dict, fp32: tuple) -> BiasSite | None:
    """The int32 bias that input ``k`` of ``node`` reads; ``fp32``: the same
    node in the FP32 graph and that graph's initializers."""
    source, inits = fp32
    if k != 2 or source is None or len(source.input) < 3 or source.input[2] not in inits:
        return None
    bias = numpy_helper.to_array(inits[source.input[2]])
    bias_dq, x, weight = w.dequantized(node.input[2]), w.dequantized(node.input[0]), w.dequantized(node.input[1])
    if bias.dtype != np.float32 or x is None or weight is None or x.input[1] not in sites:
        return None
    if weight.input[1] not in w.index or bias_dq.input[1] not in w.index:
        return None
    beta = 1.0
    if source.op_type == "Gemm":  # the quantizer folds Gemm's beta into the bias scale
        beta = attribute(source, "beta", 1.0)
    weight_scale = numpy_helper.to_array(w.graph.initializer[w.index[weight.input[1]]])
    return BiasSite(w.index[bias_dq.input[0]], w.index[bias_dq.input[1]], x.input[1], weight_scale, bias, beta)


def apply_plan(model: onnx.ModelProto, plan: PatchPlan, adjusted: dict, args: dict) -> bool:
    """Rewrite ``model``'s range-dependent initializers in place for
    ``adjusted``; False (``model`` partly rewritten) when a tensor has no
    range or a bias would move its weight scale."""
    inits = model.graph.initializer
    scales = {}
    for site in plan.activations:
        if site.tensor not in adjusted:
            return False
        made = activation_tensors(site.tensor, adjusted, args)
        if made is None:
            return False
        scale, zero = made
        inits[site.scale].CopyFrom(scale)
        inits[site.zero_point].CopyFrom(zero)
        scales[scale.name] = numpy_helper.to_array(scale)
    for b in plan.biases:
        input_scale = scales[b.input_scale]
        if bias_scale_too_small(b, input_scale):
            return False
        q, s = bias_tensors(b, input_scale, (inits[b.quantized].name, inits[b.scale].name), inits[b.quantized].dims)
        inits[b.quantized].CopyFrom(q)
        inits[b.scale].CopyFrom(s)
    return True


def checked_plan(written: onnx.ModelProto, fp32: onnx.ModelProto, ranges: dict, args: dict) -> PatchPlan | None:
    """The plan of ``written``, when rewriting it for the ranges it was
    written with gives back every touched initializer byte for byte."""
    adjusted = adjusted_ranges(fp32, ranges, args)
    plan = make_plan(written, fp32, adjusted)
    if plan is None:
        return None
    copy = onnx.ModelProto()
    copy.CopyFrom(written)
    if not apply_plan(copy, plan, adjusted, args):
        return None
    touched = [i for s in plan.activations for i in (s.scale, s.zero_point)] + [i for b in plan.biases for i in (b.quantized, b.scale)]
    a, b = written.graph.initializer, copy.graph.initializer
    return plan if all(a[i].SerializeToString() == b[i].SerializeToString() for i in touched) else None


# ---------------------------------------------------------------- the cache of written graphs


@dataclass
class Written:
    """One graph the quantizer wrote, the ranges it was written with, and
    (once needed) its patch plan."""

    data: bytes | None
    ranges: dict
    model: onnx.ModelProto | None = None
    plan: PatchPlan | None = None
    checked: bool = False


def structure_key(model_path: Path, names, settings) -> tuple:
    """What decides the structure the quantizer writes: the FP32 graph (its
    file: equalized and bias-corrected graphs are other files), every
    quantizer setting, and which tensors have a range (``names``)."""
    return str(model_path), replace(settings, exclude_nodes=tuple(sorted(set(settings.exclude_nodes)))), frozenset(names)


def needed_tensors(fp32: onnx.ModelProto, plan: PatchPlan) -> set[str]:
    """The tensors whose ranges a patch reads: each site's own, the output of
    a Relu or Clip reading it (the quantizer gives its input that range), and
    every Concat's inputs and output (Concat inputs may take their Concat's)."""
    sites = {s.tensor for s in plan.activations}
    out = set(sites)
    for node in fp32.graph.node:
        if node.op_type in ("Relu", "Clip") and node.input and node.input[0] in sites:
            out.add(node.output[0])
        elif node.op_type == "Concat":
            out.update(n for n in (*node.input, *node.output) if n)
    return out


@dataclass
class WrittenGraphs:
    """The last graphs ONNX Runtime's quantizer wrote, by structure; a trial
    whose structure is here is written by patching instead."""

    keep: int = KEEP_WRITTEN
    max_bytes: int = MAX_BYTES
    patched: int = 0  # trials written by patching
    quantized: int = 0  # trials written by the quantizer
    _entries: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def needed(self, fp32: onnx.ModelProto, model_path: Path, names, settings) -> set[str] | None:
        """The tensors whose ranges a patch of this structure reads, or None
        when no remembered graph of it can be patched (``names``: the tensors
        that have a range)."""
        entry = self._checked(fp32, structure_key(model_path, names, settings), settings)
        return None if entry is None else needed_tensors(fp32, entry.plan)

    def patch(self, fp32: onnx.ModelProto, model_path: Path, names, ranges: dict, settings, out: Path) -> bool:
        """Write the graph the quantizer would write to ``out`` from a
        remembered one: ``ranges`` holds at least :meth:`needed`'s tensors,
        ``names`` every tensor that has a range. False when there is none to
        patch, or when this patch would not be exact."""
        entry = self._checked(fp32, structure_key(model_path, names, settings), settings)
        if entry is None:
            return False
        args = quantizer_arguments(settings)
        # A refused rewrite may leave the model half rewritten: harmless, since
        # a successful one rewrites every site.
        if not apply_plan(entry.model, entry.plan, adjusted_ranges(fp32, ranges, args), args):
            return False
        out.write_bytes(entry.model.SerializeToString())
        self.patched += 1
        return True

    def remember(self, model_path: Path, ranges: dict, settings, written: Path) -> None:
        """Keep what the quantizer just wrote to ``written`` from ``ranges`` (all of them) as a base."""
        self.quantized += 1
        if settings.format != "qdq" or written.stat().st_size > self.max_bytes:
            return
        key = structure_key(model_path, ranges, settings)
        self._entries[key] = Written(written.read_bytes(), dict(ranges))
        self._entries.move_to_end(key)
        while len(self._entries) > self.keep or (len(self._entries) > 1 and self._size() > self.max_bytes):
            self._entries.popitem(last=False)

    def _checked(self, fp32: onnx.ModelProto, key: tuple, settings) -> Written | None:
        """The entry of ``key`` with its plan, when it has one."""
        entry = self._entries.get(key) if settings.format == "qdq" else None
        if entry is None:
            return None
        self._entries.move_to_end(key)
        if not entry.checked:
            entry.model = onnx.ModelProto.FromString(entry.data)
            entry.data, entry.checked = None, True
            entry.plan = checked_plan(entry.model, fp32, entry.ranges, quantizer_arguments(settings))
        return entry if entry.plan is not None else None

    def _size(self) -> int:
        return sum(len(e.data) if e.data is not None else e.model.ByteSize() for e in self._entries.values())
