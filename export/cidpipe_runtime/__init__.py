"""Torch-free runtime shipped to target devices (numpy + onnxruntime or tensorrt).

Public API: ``measure_latency``/``high_cov_warning`` (latency.py), ``OrtBackend`` (ort_backend.py),
``TrtBackend`` (trt_backend.py, imports tensorrt lazily), ``evaluate`` (accuracy.py), and the CLI
``python -m cidpipe_runtime``. Nothing here may import torch or cidpipe.
"""

from __future__ import annotations

__version__ = "0.1.0"
