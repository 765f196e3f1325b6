"""Float32 islands inside an autocast step: the backbones run in bf16/fp16, the losses and heads do not.

Autocast lowers every matmul and linear layer, also those of the losses (the class loss's Gram matrices),
the regressor and CID's interventional head (``p @ D`` and g). Fed cosine similarities, normalised
squared errors and probabilities, bf16's 8-bit mantissa cost 1e-2 relative error in the class loss and
4e-3 in the regressor's and head's gradients (256-d features, 100 classes, batch 64, the same backbone
outputs; tests/distill/test_autocast_fp32.py), and fp16 overflows on squared feature norms. So these
pieces run with autocast switched off, on float32 inputs.

Off autocast the helpers do nothing at all: an fp32 run keeps exactly the same operations (and so the
same numbers as the reference implementation), and an exported graph gains no autocast node or cast.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

LossFunction = TypeVar("LossFunction", bound=Callable[..., Tensor])


def autocast_active(reference: Tensor) -> bool:
    """Whether autocast is on for the device ``reference`` lives on (never for devices without autocast,
    such as ``meta``, where asking would raise)."""
    device_type = reference.device.type
    return torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type)


def float32_region(reference: Tensor) -> contextlib.AbstractContextManager:
    """Autocast switched off for ``reference``'s device while it is on; a no-op context otherwise."""
    if autocast_active(reference):
        return torch.autocast(reference.device.type, enabled=False)
    return contextlib.nullcontext()


def as_float32(tensor: Tensor) -> Tensor:
    """``tensor`` in float32; the same tensor object (no autograd node) when it already is."""
    return tensor if tensor.dtype == torch.float32 else tensor.float()


def float32_loss(loss: LossFunction) -> LossFunction:
    """Run a loss function with autocast off; the function itself casts its float inputs to float32.

    The device is taken from the first positional argument, a tensor in every loss here.
    """

    @functools.wraps(loss)
    def wrapper(first: Tensor, *args, **kwargs):  # noqa: ANN002, ANN003 - the loss's own signature
        with float32_region(first):
            return loss(first, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
