"""Errors of the device runtime (it must not import cidpipe, so it has its own small hierarchy).

cidpipe maps them onto its own error classes (see cidpipe/bench/backends.py); the runtime CLI prints
``str(err)`` as the one-line ``{"error": ...}`` document.
"""

from __future__ import annotations


class RuntimeFailure(Exception):
    """Base class; ``str(err)`` is one line a user can act on."""


class InputError(RuntimeFailure):
    """A model file, engine or evaluation npz that is missing or unreadable."""


class BackendUnavailable(RuntimeFailure):
    """The requested inference library (onnxruntime, tensorrt, pycuda/cuda-python) is not importable."""


class ProviderMismatch(RuntimeFailure):
    """The session did not get the execution provider that was asked for (no silent fallback)."""


class EngineMismatch(RuntimeFailure):
    """A TensorRT engine built with another TensorRT version or for another GPU."""
