"""ONNX -> TensorRT engine with the TensorRT Python API (8.6 and 10.x), plus the sidecar that says where
the engine may run.

An engine only runs on the TensorRT version and GPU it was built with, so the sidecar ``<engine>.json``
records both and :func:`check_engine_compatible` refuses a mismatch before a confusing deserialisation error.
TensorRT is imported lazily: it exists only on machines with an NVIDIA GPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cidpipe.atomic import atomic_write_bytes
from cidpipe.errors import MissingDependency, ModelError, UsageError
from cidpipe.export.config import TensorRTConfig
from cidpipe.export.trtexec import parse_trt_version

NO_TENSORRT = (
    "TensorRT is not importable here; build on the target with `cidpipe export --target trt --device NAME` "
    "(runs trtexec there) or install the `trt` extra on a machine with an NVIDIA GPU"
)


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as err:
        raise MissingDependency(NO_TENSORRT) from err
    return tensorrt


def sidecar_path(engine_path: Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def gpu_info(device_index: int = 0) -> dict[str, str | None]:
    """Name and compute capability ("8.7") of a CUDA GPU via torch, else cuda-python; None when unknown."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device_index)
            return {
                "gpu_name": torch.cuda.get_device_name(device_index),
                "compute_capability": f"{major}.{minor}",
            }
    except Exception:  # a CPU-only torch or a broken driver: try cuda-python next
        pass
    try:
        from cuda.bindings import runtime as cudart

        err, props = cudart.cudaGetDeviceProperties(device_index)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return {"gpu_name": name.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}
    except Exception:  # cuda-python absent or no device
        pass
    return {"gpu_name": None, "compute_capability": None}


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    cfg: TensorRTConfig,
    *,
    input_shape: tuple[int, int, int],
) -> dict[str, Any]:
    """Parse ``onnx_path``, build a serialized engine for ``cfg`` and write it plus its sidecar atomically."""
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise UsageError(f"{onnx_path} does not exist; export the ONNX model first")
    if not cfg.min_batch <= cfg.opt_batch <= cfg.max_batch:
        raise UsageError(
            f"TensorRT batch profile needs min <= opt <= max; got "
            f"{cfg.min_batch}/{cfg.opt_batch}/{cfg.max_batch}"
        )
    version = parse_trt_version(trt.__version__)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 networks are always explicit-batch and the flag is deprecated; 8.x needs it for ONNX.
    flags = 0 if version >= (10, 0, 0) else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(min(parser.num_errors, 3)))
        raise ModelError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    workspace = int(cfg.workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit"):  # 8.4+
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    else:
        config.max_workspace_size = workspace
    if cfg.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif cfg.precision == "int8":
        if not _has_qdq(network):
            raise UsageError(
                f"{onnx_path} has no Q/DQ nodes: a TensorRT INT8 engine is built from a quantized ONNX "
                "(`cidpipe quantize` with quantize.target=trt), never with made-up scales"
            )
        config.set_flag(trt.BuilderFlag.INT8)  # with Q/DQ in the graph: explicit quantization
        config.set_flag(trt.BuilderFlag.FP16)  # layers kept in float may use FP16

    tensor = network.get_input(0)
    profile_shapes = {
        "min": (cfg.min_batch, *input_shape),
        "opt": (cfg.opt_batch, *input_shape),
        "max": (cfg.max_batch, *input_shape),
    }
    dynamic = int(tuple(tensor.shape)[0]) == -1
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(tensor.name, profile_shapes["min"], profile_shapes["opt"], profile_shapes["max"])
        config.add_optimization_profile(profile)

    cache_path = Path(cfg.timing_cache) if cfg.timing_cache is not None else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(
            f"TensorRT {trt.__version__} failed to build an engine from {onnx_path}; "
            "rerun with CIDPIPE_DEBUG=1 and check the TensorRT log above"
        )
    atomic_write_bytes(engine_path, bytes(serialized))
    if cache_path is not None:
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))

    sidecar = {
        "tensorrt_version": str(trt.__version__),
        **gpu_info(),
        "precision": cfg.precision,
        "input_name": tensor.name,
        "input_shape": [int(d) for d in input_shape],
        "profile": {k: list(v) for k, v in profile_shapes.items()} if dynamic else None,
        "workspace_mb": int(cfg.workspace_mb),
        "onnx": onnx_path.name,
    }
    atomic_write_bytes(sidecar_path(engine_path), json.dumps(sidecar, indent=2).encode())
    return sidecar


def check_engine_compatible(
    sidecar: dict[str, Any],
    *,
    installed_version: str | None = None,
    gpu: dict[str, str | None] | None = None,
) -> None:
    """Raise ModelError if this machine's TensorRT version or GPU differs from the engine's build."""
    if installed_version is None:
        installed_version = str(import_tensorrt().__version__)
    gpu = gpu if gpu is not None else gpu_info()
    built_version = str(sidecar.get("tensorrt_version", "unknown"))
    same_version = parse_trt_version(built_version) == parse_trt_version(installed_version)
    built_cc, here_cc = sidecar.get("compute_capability"), gpu.get("compute_capability")
    built_name, here_name = sidecar.get("gpu_name"), gpu.get("gpu_name")
    same_gpu = built_cc == here_cc and (built_name is None or here_name is None or built_name == here_name)
    if not (same_version and same_gpu):
        raise ModelError(
            f"engine built with TensorRT {built_version} on {built_name or 'unknown GPU'} "
            f"({built_cc or '?'}); this machine has TensorRT {installed_version} on "
            f"{here_name or 'unknown GPU'} ({here_cc or '?'}): "
            "rebuild it here (`cidpipe export --target trt`)"
        )


def _has_qdq(network) -> bool:
    import tensorrt as trt

    kinds = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))
