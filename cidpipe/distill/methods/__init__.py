"""One file per distillation method; importing this package registers them all."""

from cidpipe.distill.methods import ce, cid, dkd, fitnet, kd  # noqa: F401 - imported to register
