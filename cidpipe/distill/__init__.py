"""Distillation: one Distiller per method (methods/), pure losses (losses.py), the deployable (deploy.py)."""

from cidpipe.distill.base import Distiller, StepOutput
from cidpipe.distill.deploy import CIDDeployable, build_deployable
from cidpipe.distill.registry import build_distiller, list_methods, register_method

__all__ = [
    "CIDDeployable",
    "Distiller",
    "StepOutput",
    "build_deployable",
    "build_distiller",
    "list_methods",
    "register_method",
]
