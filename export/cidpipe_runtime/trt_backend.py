"""TensorRT backend (TensorRT 8.x bindings API and the 8.5+/10.x named-tensor API).

tensorrt and a CUDA binding (pycuda, else cuda-python) are imported lazily: the rest of the
runtime works on machines without a GPU. An engine only runs on the TensorRT version that built it,
so the sidecar ``<engine>.json`` written at build time is checked before deserialising.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from cidpipe_runtime.errors import BackendUnavailable, EngineMismatch, InputError


def read_engine_sidecar(engine_path: str) -> dict[str, Any]:
    """The build facts recorded next to the engine: tensorrt_version, gpu_name, compute_capability."""
    sidecar = engine_path + ".json"
    if not os.path.isfile(sidecar):
        raise EngineMismatch(
            f"{sidecar} is missing: the TensorRT version that built {engine_path} is unknown; "
            "rebuild the engine with `cidpipe export --target tensorrt` on this device"
        )
    try:
        with open(sidecar, encoding="utf-8") as handle:
            facts = json.load(handle)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {sidecar}: {err}") from err
    if not isinstance(facts, dict) or "tensorrt_version" not in facts:
        raise InputError(f"{sidecar} has no 'tensorrt_version'; rebuild the engine")
    return facts


def check_engine_compatible(
    facts: dict[str, Any], installed_version: str, compute_capability: str | None = None
) -> None:
    """Refuse an engine built by another TensorRT (major.minor.patch) or for another GPU architecture."""
    built = str(facts["tensorrt_version"]).split(".")[:3]
    here = str(installed_version).split(".")[:3]
    if built != here:
        raise EngineMismatch(
            f"engine was built with TensorRT {facts['tensorrt_version']} but TensorRT {installed_version} "
            "is installed; engines are not portable across versions: rebuild it on this device"
        )
    recorded_cc = facts.get("compute_capability")
    if compute_capability and recorded_cc and str(recorded_cc) != str(compute_capability):
        raise EngineMismatch(
            f"engine was built for compute capability {recorded_cc} ({facts.get('gpu_name', '?')}) "
            f"but this GPU is {compute_capability}; rebuild the engine on this device"
        )


class _CudaMemory:
    """Minimal device memory + stream over pycuda or cuda-python, whichever is installed."""

    def __init__(self) -> None:
        try:
            import pycuda.autoinit  # noqa: F401  (creates the context)
            import pycuda.driver as cuda

            self._pycuda = cuda
            self.stream = cuda.Stream()
            self.stream_handle = self.stream.handle
            self.kind = "pycuda"
            return
        except ImportError:
            self._pycuda = None
        try:
            try:
                from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
            except ImportError:
                from cuda import cudart  # older cuda-python
        except ImportError as err:
            raise BackendUnavailable(
                "the tensorrt backend needs pycuda or cuda-python for device buffers; "
                "install one of them (`pip install pycuda` or `pip install cuda-python`)"
            ) from err
        self._cudart = cudart
        self.stream = self._check(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)
        self.kind = "cuda-python"

    def _check(self, result: Any) -> Any:
        status, *values = result if isinstance(result, tuple) else (result,)
        if int(status) != 0:
            raise BackendUnavailable(f"CUDA runtime call failed with status {status}")
        return values[0] if values else None

    def alloc(self, nbytes: int) -> int:
        if self._pycuda is not None:
            allocation = self._pycuda.mem_alloc(max(1, nbytes))
            self._keep = getattr(self, "_keep", []) + [allocation]
            return int(allocation)
        return int(self._check(self._cudart.cudaMalloc(max(1, nbytes))))

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        if self._pycuda is not None:
            self._pycuda.memcpy_htod_async(pointer, host, self.stream)
            return
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self._cudart.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self.stream))

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        if self._pycuda is not None:
            self._pycuda.memcpy_dtoh_async(host, pointer, self.stream)
            return
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self._cudart.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self.stream))

    def synchronize(self) -> None:
        if self._pycuda is not None:
            self.stream.synchronize()
            return
        self._check(self._cudart.cudaStreamSynchronize(self.stream))

    def compute_capability(self) -> str | None:
        try:
            if self._pycuda is not None:
                major, minor = self._pycuda.Context.get_device().compute_capability()
                return f"{major}.{minor}"
            props = self._check(self._cudart.cudaGetDeviceProperties(0))
            return f"{props.major}.{props.minor}"
        except Exception:  # a query failure must not hide the real error later on
            return None


class TrtBackend:
    """``run(x) -> logits`` on a serialized TensorRT engine; one input, first output = logits."""

    name = "tensorrt"
    provider = "TensorRT"

    def __init__(self, engine_path: str) -> None:
        if not os.path.isfile(engine_path):
            raise InputError(f"engine file not found: {engine_path}")
        try:
            import tensorrt as trt
        except ImportError as err:
            raise BackendUnavailable(
                "tensorrt is not importable here; install TensorRT's Python bindings (JetPack ships "
                "them as python3-libnvinfer) or use --backend onnxruntime"
            ) from err
        facts = read_engine_sidecar(engine_path)
        check_engine_compatible(facts, trt.__version__)
        self.memory = _CudaMemory()
        check_engine_compatible(facts, trt.__version__, self.memory.compute_capability())
        self._trt = trt
        self.library_version = trt.__version__
        self.threads = 1
        logger = trt.Logger(trt.Logger.WARNING)
        with open(engine_path, "rb") as handle:
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(handle.read())
        if self.engine is None:
            raise InputError(f"TensorRT could not deserialize {engine_path}; rebuild the engine")
        self.context = self.engine.create_execution_context()
        self.named_tensors = hasattr(self.engine, "num_io_tensors")  # TensorRT >= 8.5
        self._shape: tuple | None = None
        self._device: dict[str, int] = {}
        self._host_out: np.ndarray | None = None

    def _io_names(self) -> list[str]:
        return [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]

    def _prepare(self, x: np.ndarray) -> None:
        """(Re)allocate buffers and set shapes only when the input shape changes."""
        trt = self._trt
        if self.named_tensors:
            names = self._io_names()
            inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
            outputs = [n for n in names if n not in inputs]
            self.input_name, self.output_name = inputs[0], outputs[0]
            self.input_dtype = trt.nptype(self.engine.get_tensor_dtype(self.input_name))
            if self.context.set_input_shape(self.input_name, tuple(x.shape)) is False:
                raise InputError(
                    f"the engine does not accept input shape {tuple(x.shape)}; rebuild it with a "
                    "dynamic batch profile covering this batch size or bench only its built batch size"
                )
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))
            out_dtype = trt.nptype(self.engine.get_tensor_dtype(self.output_name))
        else:  # TensorRT 8.0-8.4 bindings API
            inputs = [i for i in range(self.engine.num_bindings) if self.engine.binding_is_input(i)]
            outputs = [i for i in range(self.engine.num_bindings) if i not in inputs]
            self.input_index, self.output_index = inputs[0], outputs[0]
            self.input_dtype = trt.nptype(self.engine.get_binding_dtype(self.input_index))
            self.context.set_binding_shape(self.input_index, tuple(x.shape))
            out_shape = tuple(self.context.get_binding_shape(self.output_index))
            out_dtype = trt.nptype(self.engine.get_binding_dtype(self.output_index))
        in_bytes = int(np.prod(x.shape)) * np.dtype(self.input_dtype).itemsize
        self._host_out = np.empty(out_shape, dtype=out_dtype)
        self._device = {"in": self.memory.alloc(in_bytes), "out": self.memory.alloc(self._host_out.nbytes)}
        if self.named_tensors:
            self.context.set_tensor_address(self.input_name, self._device["in"])
            self.context.set_tensor_address(self.output_name, self._device["out"])
        self._shape = tuple(x.shape)

    def run(self, x: np.ndarray) -> np.ndarray:
        if self._shape != tuple(x.shape):
            self._prepare(x)
        host_in = np.ascontiguousarray(x, dtype=self.input_dtype)
        self.memory.to_device(self._device["in"], host_in)
        if self.named_tensors:
            ok = self.context.execute_async_v3(self.memory.stream_handle)
        else:
            bindings = [0] * self.engine.num_bindings
            bindings[self.input_index] = self._device["in"]
            bindings[self.output_index] = self._device["out"]
            self.memory.synchronize()
            ok = self.context.execute_v2(bindings)
        if not ok:
            raise InputError("TensorRT execution failed; run with CIDPIPE_DEBUG=1 for TensorRT's log")
        assert self._host_out is not None
        self.memory.to_host(self._host_out, self._device["out"])
        self.memory.synchronize()
        return np.asarray(self._host_out, dtype=np.float32).copy()
