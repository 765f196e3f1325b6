"""cidpipe: train a teacher, distill a compact student with CID, quantize, export, bench and gate it."""

__version__ = "0.1.0"
