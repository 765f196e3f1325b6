"""ONNX Runtime backend: one session, built outside any timed region, pinned threads, no silent fallback."""

from __future__ import annotations

import os

import numpy as np

from cidpipe_runtime.errors import BackendUnavailable, InputError, ProviderMismatch


class OrtBackend:
    """``run(x) -> logits`` on an ONNX Runtime session with exactly the requested provider."""

    name = "onnxruntime"

    def __init__(self, model_path: str, provider: str = "CPUExecutionProvider", threads: int = 1) -> None:
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
        options = ort.SessionOptions()
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
        self.provider = provider
        self.threads = int(threads)
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.output_name = self.session.get_outputs()[0].name
        self.library_version = ort.__version__

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        logits = self.session.run([self.output_name], feed)[0]
        return np.asarray(logits, dtype=np.float32)
