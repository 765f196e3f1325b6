"""ONNX Runtime backend: one session, built outside any timed region, pinned threads, no silent fallback."""

from __future__ import annotations

import json
import os

import numpy as np

from cidpipe_runtime.errors import BackendUnavailable, InputError, ProviderMismatch


class OrtBackend:
    """``run(x) -> logits`` on an ONNX Runtime session with exactly the requested provider."""

    name = "onnxruntime"
    OPTIMIZATION_LEVELS = ("disabled", "basic", "extended", "all")

    def __init__(
        self,
        model_path: str,
        provider: str = "CPUExecutionProvider",
        threads: int = 1,
        optimization: str = "all",
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise BackendUnavailable(
                f"onnxruntime is not importable ({err}); install it with `pip install onnxruntime`"
            ) from err
        if not os.path.isfile(model_path):
            raise InputError(f"model file not found: {model_path}")
        available = ort.get_available_providers()
        if provider not in available:
            raise ProviderMismatch(
                f"execution provider {provider} is not available in this onnxruntime "
                f"{ort.__version__} (available: {', '.join(available)}); install the matching "
                "onnxruntime build or pass --provider CPUExecutionProvider"
            )
        if optimization not in self.OPTIMIZATION_LEVELS:
            raise InputError(
                f"unknown onnxruntime optimization level {optimization!r}; "
                f"choose one of {', '.join(self.OPTIMIZATION_LEVELS)}"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        # Pinned threads and sequential execution make latencies comparable across runs and hosts.
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model_path, sess_options=options, providers=[provider])
        except Exception as err:  # onnxruntime raises its own untyped errors for corrupt models
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InputError(f"onnxruntime cannot load {model_path}: {first_line}") from err
        active = self.session.get_providers()[0]
        if active != provider:
            raise ProviderMismatch(
                f"asked for {provider} but onnxruntime chose {active} for {model_path}; "
                "refusing to benchmark a silent fallback"
            )
        self.model_path = model_path
        self.provider = provider
        self.threads = int(threads)
        self.optimization = optimization
        self.quantization_target = _quantization_target(self.session)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.output_name = self.session.get_outputs()[0].name
        self.library_version = ort.__version__

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        logits = self.session.run([self.output_name], feed)[0]
        return np.asarray(logits, dtype=np.float32)


def _quantization_target(session: object) -> str | None:
    """The ``target`` cidpipe wrote into an INT8 model's ``quantization`` metadata ("cpu" | "trt"), if any.

    Read defensively: the metadata is the file's word, and a model from elsewhere has none."""
    try:
        text = session.get_modelmeta().custom_metadata_map.get("quantization")  # type: ignore[attr-defined]
        target = json.loads(text).get("target") if text else None
    except (ValueError, AttributeError):
        return None
    return target if target in ("cpu", "trt") else None


EXACT_QDQ = "exact Q/DQ (onnxruntime optimisations off: int32 accumulation, as TensorRT computes)"


def exact_qdq_twin(backend: object) -> OrtBackend | None:
    """A second session of a TensorRT INT8 graph with ORT's optimisations off, for the accuracy pass.

    TensorRT runs a QDQ graph's integer convolutions with int32 accumulation. ORT's fused x86 S8S8 kernels
    on CPUs without VNNI add pairs of products in int16 and saturate, so a TensorRT artifact benched on such
    a CPU would show an accuracy no board ever gives (measured: 3.20 points on a MobileNetV2 whose exact
    graph lost 0.03; cidpipe BENCHMARKS.md). Its latency is still ORT's optimised one. None when the backend
    is not a CPU session of a TensorRT-target INT8 model (a CPU-target model is judged by the kernels that
    run it)."""
    if not isinstance(backend, OrtBackend) or backend.quantization_target != "trt":
        return None
    if backend.provider != "CPUExecutionProvider" or backend.optimization == "disabled":
        return None
    return OrtBackend(backend.model_path, provider=backend.provider, threads=backend.threads,
                      optimization="disabled")  # fmt: skip
