"""Distillation: one Distiller per method (methods/), pure losses (losses.py), the deployable (deploy.py).

Names resolve on first use so that reading a recipe (cidpipe.distill.config) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Distiller": "cidpipe.distill.base",
    "StepOutput": "cidpipe.distill.base",
    "CIDDeployable": "cidpipe.distill.deploy",
    "build_deployable": "cidpipe.distill.deploy",
    "build_distiller": "cidpipe.distill.registry",
    "list_methods": "cidpipe.distill.registry",
    "register_method": "cidpipe.distill.registry",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cidpipe.distill' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
