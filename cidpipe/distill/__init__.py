"""Distillation: one Distiller per method (methods/), pure losses (losses.py), the deployable (deploy.py).

Names resolve on first use so that reading a recipe (cidpipe.distill.config) does not import torch.
"""

from __future__ import annotations

from cidpipe.lazy import lazy_exports

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

__getattr__ = lazy_exports(__name__, _EXPORTS)
