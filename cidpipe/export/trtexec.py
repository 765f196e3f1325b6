"""The exact ``trtexec`` argument list that builds (and by default times) an engine from an ONNX file.

Flag syntax differs by TensorRT version (checked against trtexec's own help text of each release):
- workspace: ``--workspace=N`` (MiB) before 8.4; ``--memPoolSize=workspace:N`` (MiB) from 8.4; TensorRT 10
  drops ``--workspace`` and accepts unit suffixes, so ``workspace:NM`` is written there.
- ``--percentile``: one value (``--percentile=99``) before 8.6; a list (``--percentile=90,95,99``) from 8.6.
- build without timing: ``--buildOnly`` before 8.6, ``--skipInference`` from 8.6.
- INT8: cidpipe only builds INT8 from a QDQ ONNX (``cidpipe quantize --target trt``); there ``--int8`` turns
  on explicit quantization with the scales in the graph. ``--int8`` on a plain FP32 ONNX would time the
  engine with dummy scales (fine for speed, wrong for accuracy) and ``--best`` (all precisions) likewise,
  so neither is used for that.
Data transfers are left on (no ``--noDataTransfers``) so the reported host latency includes the copies,
like the onnxruntime numbers it is compared with; ``--useSpinWait`` makes the timings steadier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cidpipe.errors import UsageError
from cidpipe.export.config import TensorRTConfig

DEFAULT_PERCENTILES = (90, 95, 99)
DEFAULT_TIMING = {"warmUp": 500, "iterations": 200, "duration": 3, "useSpinWait": True}
_FLAG_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


def parse_trt_version(version: str) -> tuple[int, int, int]:
    """ "8.6.1.6" -> (8, 6, 1); "10.3" -> (10, 3, 0)."""
    parts = re.findall(r"\d+", str(version))
    if not parts:
        raise UsageError(f"cannot read a TensorRT version from {version!r}; give it as MAJOR.MINOR[.PATCH]")
    nums = [int(p) for p in parts[:3]] + [0] * (3 - min(3, len(parts)))
    return nums[0], nums[1], nums[2]


def shape_spec(input_name: str, batch: int, input_shape: tuple[int, int, int]) -> str:
    return f"{input_name}:" + "x".join(str(int(d)) for d in (batch, *input_shape))


def trtexec_command(
    onnx_path: Path,
    engine_path: Path,
    cfg: TensorRTConfig,
    *,
    input_name: str = "input",
    input_shape: tuple[int, int, int],
    timing_cache: Path | None = None,
    extra: Mapping[str, Any] | None = None,
    trt_version: str = "10.0",
    dynamic_batch: bool = True,
    build_only: bool = False,
    trtexec: str = "trtexec",
) -> list[str]:
    """Arguments for ``subprocess.run`` (a list, never a shell string).

    ``extra`` adds or overrides trtexec flags by name: ``{"iterations": 1000, "verbose": True,
    "useSpinWait": False}`` -> ``--iterations=1000 --verbose`` (False drops a default flag).
    """
    version = parse_trt_version(trt_version)
    if len(tuple(input_shape)) != 3:
        raise UsageError(f"input_shape must be (channels, height, width); got {tuple(input_shape)}")
    if not cfg.min_batch <= cfg.opt_batch <= cfg.max_batch:
        raise UsageError(
            f"TensorRT batch profile needs min <= opt <= max; got "
            f"{cfg.min_batch}/{cfg.opt_batch}/{cfg.max_batch}"
        )
    args = [trtexec, f"--onnx={onnx_path}", f"--saveEngine={engine_path}"]
    if cfg.precision == "fp16":
        args.append("--fp16")
    elif cfg.precision == "int8":
        args += ["--int8", "--fp16"]  # Q/DQ layers in INT8; layers kept in float may use FP16
    if dynamic_batch:
        for flag, batch in (
            ("minShapes", cfg.min_batch),
            ("optShapes", cfg.opt_batch),
            ("maxShapes", cfg.max_batch),
        ):
            args.append(f"--{flag}={shape_spec(input_name, batch, input_shape)}")
    args.append(_workspace_flag(cfg.workspace_mb, version))
    cache = timing_cache if timing_cache is not None else cfg.timing_cache
    if cache is not None:
        args.append(f"--timingCacheFile={cache}")
    options: dict[str, Any] = {}
    if build_only:
        options["skipInference" if version >= (8, 6, 0) else "buildOnly"] = True
    else:
        options.update(DEFAULT_TIMING)
        options["percentile"] = (
            ",".join(str(p) for p in DEFAULT_PERCENTILES)
            if version >= (8, 6, 0)
            else str(DEFAULT_PERCENTILES[-1])
        )
    for key, value in (extra or {}).items():
        if not _FLAG_NAME.match(str(key)):
            raise UsageError(
                f"trtexec option {key!r} is not a flag name (letters and digits, e.g. 'iterations')"
            )
        options[str(key)] = value
    for key, value in options.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not False and value is not None:
            args.append(f"--{key}={value}")
    return args


def _workspace_flag(workspace_mb: int, version: tuple[int, int, int]) -> str:
    if version < (8, 4, 0):
        return f"--workspace={int(workspace_mb)}"
    if version < (10, 0, 0):
        return f"--memPoolSize=workspace:{int(workspace_mb)}"
    return f"--memPoolSize=workspace:{int(workspace_mb)}M"
