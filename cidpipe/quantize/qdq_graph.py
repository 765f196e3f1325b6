"""The INT8 artifact's own QDQ graph, run in torch with fake quantizers, and written back after fine-tuning.

Training the graph ORT's quantizer produced (instead of the torch model with quantizers inserted by some
library's rules) makes "quantized exactly where the artifact quantizes" true by construction: every
QuantizeLinear -> DequantizeLinear pair on an activation becomes an :class:`ActivationQuantizer`, every
dequantized int8 weight (or, in TensorRT graphs, Q/DQ pair on a float weight) a trainable float weight
fake-quantized per channel, and the nodes the accuracy budget kept in float have no quantizer because the
graph has none there. Exporting writes new integer weights, biases and scales into the same nodes, so the
fine-tuned artifact has the PTQ artifact's graph, node for node (and its latency).

BatchNorm was folded into the convolutions by ORT's pre-processing, so the fine-tune runs with folded,
frozen BN, the usual choice for a short QAT schedule. Int32 biases are trained in float: their grid
(input scale x weight scale) is far finer than the weights' and they are re-quantized at export.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

from cidpipe.errors import ModelError
from cidpipe.quantize.fake_quant import (
    REDUCED_WEIGHT_QMAX,
    WEIGHT_QMAX,
    ActivationQuantizer,
    fake_quantize_weight,
    weight_scale,
)

_INT_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


class QDQGraph(nn.Module):
    """``run(feeds, wanted)`` evaluates the graph from any tensors (not only the image) to any tensors, so
    a distiller can take the pooled feature and the logits from the middle of it (qat.py)."""

    def __init__(
        self, proto: onnx.ModelProto, float_weights: Mapping[str, np.ndarray] | None = None,
        frozen: Iterable[str] = (),
    ) -> None:
        super().__init__()
        graph = proto.graph
        # The weights' integer range, from the artifact's own record (int8._save_with_metadata): a 7-bit
        # (reduce_range) artifact fine-tuned on the 8-bit grid would come back with weights it must not have.
        self.weight_qmax = REDUCED_WEIGHT_QMAX if _recorded(proto).get("reduce_range") else WEIGHT_QMAX
        self.input_name = graph.input[0].name
        self.output_name = graph.output[0].name
        dims = graph.input[0].type.tensor_type.shape.dim[1:]
        self.input_shape = tuple(int(d.dim_value) for d in dims)
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        float_weights = dict(float_weights or {})
        frozen = set(frozen)
        self.weights = nn.ParameterList()
        self.quantizers = nn.ModuleList()
        self._quantizer_of_scale: dict[str, int] = {}
        # Tensor name -> ("weight", index, axis or None, quantized) | ("act", quantizer index, source name)
        self.sources: dict[str, tuple] = {}
        self.weight_names: list[str] = []  # float name of each weight (the FP32 graph's initializer name)
        self.weight_inits: list[dict[str, str]] = []  # where export writes it back
        self.constants: dict[str, Tensor] = {}
        q_outputs = {n.output[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
        self.nodes: list[onnx.NodeProto] = []
        for node in graph.node:
            if node.op_type == "QuantizeLinear":
                continue  # handled at the DequantizeLinear that reads it
            if node.op_type != "DequantizeLinear":
                self.nodes.append(node)
                continue
            src = node.input[0]
            axis = _axis(node, inits.get(node.input[1]))
            if src in q_outputs:
                quant = q_outputs[src]
                if quant.input[0] in inits:  # Q/DQ pair on a float weight (AddQDQPairToWeight)
                    name = quant.input[0]
                    self._add_weight(node.output[0], name, inits[name], axis, True, name in frozen,
                                     {"float": name, "scale": quant.input[1]})
                else:
                    index = self._quantizer(quant, inits)
                    self.sources[node.output[0]] = ("act", index, quant.input[0])
            elif src in inits:
                raw = inits[src]
                name = src.removesuffix("_quantized")
                scale = inits[node.input[1]]
                zero = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(1)
                value = float_weights.get(name)
                if value is None:
                    value = _dequantize(raw, scale, zero, axis)
                is_bias = raw.dtype == np.int32
                self._add_weight(node.output[0], name, value, axis, not is_bias, name in frozen,
                                 {"int": src, "scale": node.input[1],
                                  "kind": "bias" if is_bias else "weight"})
            else:
                raise ModelError(f"DequantizeLinear {node.name} reads {src}, which is neither a quantized "
                                 "weight nor a QuantizeLinear output; QAT needs an ORT QDQ graph")
        for name, value in inits.items():
            if value.dtype in (np.float32, np.int64) and name not in self.weight_names:
                self.constants[name] = torch.from_numpy(np.array(value))
        self._float_constants = nn.Module()  # float constants move with .to(device) as buffers
        for i, (name, value) in enumerate(self.constants.items()):
            if value.is_floating_point():
                self._float_constants.register_buffer(f"c{i}", value)
                self.constants[name] = getattr(self._float_constants, f"c{i}")
        self.produced = {o for n in self.nodes for o in n.output} | set(self.sources)
        self.simulate = True  # False: the same graph in float, the control of a QAT experiment


    # ------------------------------------------------------------------ construction
    def _add_weight(self, out: str, name: str, value: np.ndarray, axis: int | None, quantized: bool,
                    frozen: bool, where: dict[str, str]) -> None:
        param = nn.Parameter(torch.tensor(np.asarray(value, np.float32)), requires_grad=not frozen)
        self.weights.append(param)
        self.weight_names.append(name)
        self.weight_inits.append(where)
        self.sources[out] = ("weight", len(self.weights) - 1, axis, quantized)

    def _quantizer(self, quant: onnx.NodeProto, inits: dict[str, np.ndarray]) -> int:
        scale_name = quant.input[1]
        if scale_name not in self._quantizer_of_scale:
            zero = inits[quant.input[2]]
            qmin, qmax = _INT_RANGES[zero.dtype]
            scale = float(np.asarray(inits[scale_name]).reshape(-1)[0])
            symmetric = zero.dtype == np.int8 and int(zero.reshape(-1)[0]) == 0
            zero_point = int(zero.reshape(-1)[0])
            self.quantizers.append(ActivationQuantizer(scale, zero_point, qmin, qmax, symmetric))
            self.quantizers[-1].onnx_names = (scale_name, quant.input[2])
            self._quantizer_of_scale[scale_name] = len(self.quantizers) - 1
        return self._quantizer_of_scale[scale_name]

    # ------------------------------------------------------------------ running
    def forward(self, x: Tensor) -> Tensor:
        return self.run({self.input_name: x}, [self.output_name])[self.output_name]

    def run(
        self, feeds: Mapping[str, Tensor], wanted: list[str], detach: Iterable[str] = ()
    ) -> dict[str, Tensor]:
        """Values of ``wanted`` computed from ``feeds`` (nodes whose inputs cannot be reached are skipped);
        tensors named in ``detach`` are cut from the gradient where they are produced."""
        env: dict[str, Tensor] = dict(feeds)
        detach = set(detach)
        for node in self.nodes:
            if all(self._ready(w, env) for w in wanted):
                break
            if node.output[0] in env:
                continue
            inputs = [self._value(name, env) if name else None for name in node.input]
            if any(v is None for name, v in zip(node.input, inputs, strict=True) if name):
                continue
            outputs = _run_op(node, inputs)
            for name, value in zip(node.output, outputs, strict=False):
                env[name] = value.detach() if name in detach else value
        missing = [w for w in wanted if self._value(w, env) is None]
        if missing:
            raise ModelError(f"the QDQ graph cannot compute {missing[0]} from {', '.join(feeds)}")
        return {w: env[w] for w in wanted}

    def _ready(self, name: str, env: dict[str, Tensor]) -> bool:
        source = self.sources.get(name)
        return name in env or (source is not None and source[0] == "act" and self._ready(source[2], env))

    def _value(self, name: str, env: dict[str, Tensor]) -> Tensor | None:
        if name in env:
            return env[name]
        if name in self.constants:
            return self.constants[name]
        source = self.sources.get(name)
        if source is None:
            return None
        if source[0] == "weight":
            _, index, axis, quantized = source
            weight = self.weights[index]
            simulated = quantized and self.simulate
            value = fake_quantize_weight(weight, axis, self.weight_qmax) if simulated else weight
        else:
            _, index, upstream = source
            x = self._value(upstream, env)
            if x is None:
                return None
            value = self.quantizers[index](x)
        env[name] = value
        return value

    def set_quantizer_mode(self, mode: str) -> None:
        for q in self.quantizers:
            q.mode = mode

    def simulate_quantization(self, on: bool) -> None:
        """Off: weights and activations pass in float (pinned quantizers still clamp at 0, where ORT
        folded a ReLU into them), so the same fine-tune trains the float model: what QAT's gain is measured
        against (benchmarks/bench_qat.py), since part of it is just more training."""
        self.simulate = bool(on)
        self.set_quantizer_mode("fake" if on else "float")

    # ------------------------------------------------------------------ export
    def quantized_tensors(self) -> set[str]:
        """Float names of every tensor a fake quantizer acts on (weights and activations)."""
        names = {s[2] for s in self.sources.values() if s[0] == "act"}
        names |= {self.weight_names[s[1]] for s in self.sources.values() if s[0] == "weight" and s[3]}
        return names

    def write_float_into(self, proto: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of ``proto``, the pre-processed FP32 graph the PTQ graph was made from, with the
        fine-tuned float weights in place of its initializers of the same names."""
        out = onnx.ModelProto()
        out.CopyFrom(proto)
        inits = {i.name: i for i in out.graph.initializer}
        missing = [n for n in self.weight_names if n not in inits]
        if missing:
            raise ModelError(f"the FP32 graph has no initializer {missing[0]} for the fine-tuned weight")
        for name, weight in zip(self.weight_names, self.weights, strict=True):
            value = weight.detach().cpu().numpy().astype(numpy_helper.to_array(inits[name]).dtype)
            _replace(inits[name], value.reshape(inits[name].dims))
        return out

    def write_into(self, proto: onnx.ModelProto) -> onnx.ModelProto:
        """A copy of ``proto`` (the PTQ graph this was built from) with the fine-tuned integer weights,
        biases (int32 at input scale x weight scale, ORT's rule) and activation scales."""
        out = onnx.ModelProto()
        out.CopyFrom(proto)
        inits = {i.name: i for i in out.graph.initializer}
        for q in self.quantizers:
            scale, zero = q.scale_zero_point()
            scale_name, zero_name = q.onnx_names
            _replace(inits[scale_name], np.asarray(scale.item(), np.float32).reshape(inits[scale_name].dims))
            dtype = numpy_helper.to_array(inits[zero_name]).dtype
            _replace(inits[zero_name], np.asarray(zero.item(), dtype).reshape(inits[zero_name].dims))
        weight_scales: dict[str, np.ndarray] = {}
        for index, where in enumerate(self.weight_inits):  # weights first: biases need their scales
            if where.get("kind") == "bias":
                continue
            w = self.weights[index].detach().cpu()
            axis = _source_axis(self, index)
            scale = weight_scale(w, axis, self.weight_qmax).numpy().astype(np.float32)
            weight_scales[self.weight_names[index]] = scale
            if "float" in where:  # TensorRT pair: the float weight stays, its Q/DQ scale changes
                _replace(inits[where["float"]], w.numpy())
            else:
                shape = [1] * w.dim()
                if axis is not None:
                    shape[axis % w.dim()] = -1
                qmax = self.weight_qmax
                q = np.clip(np.rint(w.numpy() / scale.reshape(shape)), -qmax, qmax).astype(np.int8)
                _replace(inits[where["int"]], q)
            _replace(inits[where["scale"]], scale.reshape(inits[where["scale"]].dims))
        for index, where in enumerate(self.weight_inits):
            if where.get("kind") != "bias":
                continue
            scale = self._bias_scale(out.graph, index, weight_scales)
            b = self.weights[index].detach().cpu().numpy()
            q = np.clip(np.rint(b / scale), -(2**31), 2**31 - 1).astype(np.int32)
            _replace(inits[where["int"]], q)
            _replace(inits[where["scale"]], scale.astype(np.float32).reshape(inits[where["scale"]].dims))
        return out

    def _bias_scale(self, graph: onnx.GraphProto, index: int, weight_scales: dict) -> np.ndarray:
        out_name = next(k for k, s in self.sources.items() if s[0] == "weight" and s[1] == index)
        # A bias initializer can be shared (the exporter dedups equal constants): its scale is the one of
        # the quantized consumer, as in ORT's quantizer.
        for consumer in graph.node:
            if len(consumer.input) > 2 and consumer.input[2] == out_name:
                act, weight = self.sources.get(consumer.input[0]), self.sources.get(consumer.input[1])
                if act is not None and act[0] == "act" and weight is not None and weight[0] == "weight":
                    break
        else:
            raise ModelError(f"the int32 bias {out_name} has no consumer with a quantized input and weight")
        input_scale = self.quantizers[act[1]].scale_zero_point()[0].item()
        return input_scale * weight_scales[self.weight_names[weight[1]]]


def _source_axis(graph: QDQGraph, index: int) -> int | None:
    return next(s[2] for s in graph.sources.values() if s[0] == "weight" and s[1] == index)


def _axis(node: onnx.NodeProto, scale: np.ndarray | None) -> int | None:
    if scale is None or np.asarray(scale).size <= 1:
        return None
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def _dequantize(raw: np.ndarray, scale: np.ndarray, zero: np.ndarray, axis: int | None) -> np.ndarray:
    shape = [1] * raw.ndim
    if axis is not None:
        shape[axis % raw.ndim] = -1
    flat = [1] * raw.ndim
    zero64 = zero.astype(np.float64).reshape(shape if zero.size > 1 else flat)
    scale64 = scale.astype(np.float64).reshape(shape if scale.size > 1 else flat)
    return ((raw.astype(np.float64) - zero64) * scale64).astype(np.float32)


def _recorded(proto: onnx.ModelProto) -> dict:
    """The quantization settings the INT8 artifact records in its metadata (empty when it has none)."""
    import json

    raw = next((p.value for p in proto.metadata_props if p.key == "quantization"), None)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _replace(init: onnx.TensorProto, value: np.ndarray) -> None:
    init.CopyFrom(numpy_helper.from_array(np.asarray(value).reshape(tuple(init.dims)), init.name))


# ---------------------------------------------------------------------- the operators
def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _run_op(node: onnx.NodeProto, x: list[Tensor | None]) -> list[Tensor]:
    op, a = node.op_type, _attrs(node)
    if op == "Conv":
        return [_conv(x, a)]
    if op == "Gemm":
        left = x[0].t() if a.get("transA", 0) else x[0]
        right = x[1].t() if a.get("transB", 0) else x[1]
        y = a.get("alpha", 1.0) * (left @ right)
        return [y + a.get("beta", 1.0) * x[2] if len(x) > 2 and x[2] is not None else y]
    simple = {
        "MatMul": lambda: x[0] @ x[1], "Add": lambda: x[0] + x[1], "Sub": lambda: x[0] - x[1],
        "Mul": lambda: x[0] * x[1], "Div": lambda: x[0] / x[1], "Relu": lambda: F.relu(x[0]),
        "Sigmoid": lambda: torch.sigmoid(x[0]), "Identity": lambda: x[0],
        "GlobalAveragePool": lambda: x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True),
        "HardSigmoid": lambda: torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0, 1),
        "HardSwish": lambda: x[0] * torch.clamp(x[0] / 6 + 0.5, 0, 1),
        "Concat": lambda: torch.cat([t for t in x if t is not None], dim=a["axis"]),
        "Softmax": lambda: torch.softmax(x[0], dim=a.get("axis", -1)),
        "Transpose": lambda: x[0].permute(*a["perm"]),
    }
    if op in simple:
        return [simple[op]()]
    if op == "Clip":
        low = x[1] if len(x) > 1 and x[1] is not None else a.get("min")
        high = x[2] if len(x) > 2 and x[2] is not None else a.get("max")
        return [torch.clamp(x[0], min=None if low is None else float(low), max=None if high is None else
                            float(high))]
    if op == "Flatten":
        axis = a.get("axis", 1)
        return [x[0].reshape(math.prod(x[0].shape[:axis]), -1)]
    if op == "Reshape":
        shape = [int(s) for s in x[1].tolist()]
        shape = [x[0].shape[i] if s == 0 else s for i, s in enumerate(shape)]
        return [x[0].reshape(shape)]
    if op in ("MaxPool", "AveragePool"):
        return [_pool(op, x[0], a)]
    if op == "ReduceMean":
        axes = a.get("axes") or (x[1].tolist() if len(x) > 1 and x[1] is not None else None)
        dims = tuple(axes) if axes else tuple(range(x[0].dim()))
        return [x[0].mean(dim=dims, keepdim=bool(a.get("keepdims", 1)))]
    raise ModelError(f"QAT cannot run the {op} node {node.name}; supported: Conv, Gemm, MatMul, element-wise "
                     "ops, activations, pooling, Concat, Softmax, Flatten, Reshape, Transpose")


def _conv(x: list[Tensor | None], a: dict) -> Tensor:
    if x[0].dim() != 4:
        raise ModelError("QAT runs 2-D convolutions only")
    pads = list(a.get("pads", [0, 0, 0, 0]))
    inp = x[0]
    if pads[:2] != pads[2:]:  # asymmetric: pad explicitly (F.pad takes last dim first)
        inp = F.pad(inp, [pads[1], pads[3], pads[0], pads[2]])
        pads = [0, 0, 0, 0]
    return F.conv2d(inp, x[1], x[2] if len(x) > 2 else None, stride=tuple(a.get("strides", [1, 1])),
                    padding=tuple(pads[:2]), dilation=tuple(a.get("dilations", [1, 1])),
                    groups=a.get("group", 1))


def _pool(op: str, x: Tensor, a: dict) -> Tensor:
    pads = list(a.get("pads", [0, 0, 0, 0]))
    kernel, strides = tuple(a["kernel_shape"]), tuple(a.get("strides", [1, 1]))
    if pads[:2] != pads[2:]:
        raise ModelError("QAT runs pools with symmetric padding only")
    if op == "MaxPool":
        return F.max_pool2d(x, kernel, strides, tuple(pads[:2]), ceil_mode=bool(a.get("ceil_mode", 0)))
    return F.avg_pool2d(x, kernel, strides, tuple(pads[:2]), ceil_mode=bool(a.get("ceil_mode", 0)),
                        count_include_pad=bool(a.get("count_include_pad", 0)))
