"""A MOCK of the ``tensorrt`` Python module: TensorRT cannot be installed on this CPU-only machine.

It implements only the calls cidpipe.export.onnx2trt makes (as documented for TensorRT 8.6 and 10.x) and
records them, so a test can check what the builder was asked to do. Parsing really reads the ONNX file
with the onnx package, so the network's input name, batch axis and Q/DQ layers come from the real model.
"""

from __future__ import annotations

import enum
import types

import onnx


def make_fake_tensorrt(version: str) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list[tuple] = []
    trt.calls = calls

    class Logger:
        WARNING = "WARNING"

        def __init__(self, severity):
            calls.append(("Logger", severity))

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0

    class MemoryPoolType(enum.Enum):
        WORKSPACE = "workspace"

    class BuilderFlag(enum.Enum):
        FP16 = "fp16"
        INT8 = "int8"

    class LayerType(enum.Enum):
        QUANTIZE = "quantize"
        DEQUANTIZE = "dequantize"
        OTHER = "other"

    class Tensor:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    class Layer:
        def __init__(self, kind):
            self.type = kind

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs, self.layers = flags, [], []

        def get_input(self, i):
            return self.inputs[i]

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            self.network = network

        def parse(self, data: bytes) -> bool:
            proto = onnx.load_from_string(data)
            inp = proto.graph.input[0]
            dims = tuple(d.dim_value if d.dim_value else -1 for d in inp.type.tensor_type.shape.dim)
            self.network.inputs.append(Tensor(inp.name, dims))
            kinds = {"QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE}
            self.network.layers = [Layer(kinds.get(n.op_type, LayerType.OTHER)) for n in proto.graph.node]
            calls.append(("parse", len(data)))
            return True

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            calls.append(("set_shape", name, tuple(mn), tuple(opt), tuple(mx)))

    class TimingCache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return self.data + b"+timings"

    class Config:
        def __init__(self):
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            calls.append(("set_memory_pool_limit", pool, size))

        def set_flag(self, flag):
            calls.append(("set_flag", flag))

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile",))

        def create_timing_cache(self, data):
            calls.append(("create_timing_cache", bytes(data)))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("create_network", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build_serialized_network",))
            return b"FAKE-ENGINE"

    for obj in (
        Logger,
        NetworkDefinitionCreationFlag,
        MemoryPoolType,
        BuilderFlag,
        LayerType,
        OnnxParser,
        Builder,
    ):
        setattr(trt, obj.__name__, obj)
    return trt
