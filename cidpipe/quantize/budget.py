"""Accuracy-budget fallback: keep the most INT8-sensitive nodes in float, one at a time, until it holds.

Cost is bounded: at most ``max_candidates`` sensitivity probes (each: quantize with that node alone in float,
measure top-1) plus at most ``max_float_nodes`` greedy steps. Calibration ranges are computed once and reused
by every probe when onnxruntime supports a calibration cache (>= 1.32), so a probe costs one quantizer pass
and one validation run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cidpipe.errors import ParityError


@dataclass
class BudgetOutcome:
    nodes_in_float: list[str]
    top1_int8: float
    model_path: Path
    sensitivity: list[dict[str, float | str]] = field(default_factory=list)
    quantizations: int = 0
    met: bool = True
    message: str = ""  # why it was missed (the ParityError's text) when ``met`` is False


def order_candidates(nodes: Sequence[str], limit: int) -> list[str]:
    """Which nodes to probe when there are more than ``limit``: the first layer and then from the output end.

    The input convolution and the last layers (classifier, CID's context branch) are the usual INT8-sensitive
    ones in image classifiers; middle blocks rarely are.
    """
    nodes = list(nodes)
    if len(nodes) <= 2:
        return nodes[:limit]
    ordered = [nodes[0], *reversed(nodes[1:])]
    return ordered[:limit]


# The miss message's QAT suggestion, taken out by the quantize stage where QAT cannot run (no student).
QAT_HINT = "quantize.qat.enabled: auto, "


def fit_accuracy_budget(
    quantize: Callable[[list[str]], Path],
    top1_of: Callable[[Path], float],
    *,
    top1_fp32: float,
    top1_int8: float,
    candidates: Sequence[str],
    max_drop: float,
    max_candidates: int,
    max_float_nodes: int,
    raise_on_miss: bool = True,
) -> BudgetOutcome:
    """Greedy fallback; ``quantize(nodes_in_float) -> path`` and ``top1_of(path) -> percent`` do the work.

    A miss raises ParityError, or with ``raise_on_miss=False`` returns the last attempt with ``met`` False
    (quantization-aware fine-tuning then starts from that graph).
    """
    measured: dict[tuple[str, ...], tuple[float, Path]] = {}
    count = 0

    def measure(nodes: list[str]) -> tuple[float, Path]:
        nonlocal count
        key = tuple(sorted(nodes))
        if key not in measured:
            path = quantize(list(nodes))
            count += 1
            measured[key] = (top1_of(path), path)
        return measured[key]

    # max_float_nodes 0: every node stays INT8 (the fastest graph), so no node is worth probing.
    probed = order_candidates(candidates, max_candidates) if max_float_nodes > 0 else []
    sensitivity = [{"node": node, "top1_int8": measure([node])[0]} for node in probed]
    ranked = [s["node"] for s in sorted(sensitivity, key=lambda s: -float(s["top1_int8"]))]

    in_float: list[str] = []
    best = top1_int8
    for node in ranked[:max_float_nodes]:
        in_float.append(str(node))
        best, path = measure(in_float)
        if top1_fp32 - best <= max_drop:
            return BudgetOutcome(list(in_float), best, path, sensitivity, count)
    kept = (f"even with {len(in_float)} nodes in float" if max_float_nodes > 0 else
            "with every node in INT8 (quantize.max_float_nodes: 0)")
    message = (
        f"INT8 drop {top1_fp32 - best:.2f} points > budget {max_drop:g} {kept} "
        f"(FP32 top-1 {top1_fp32:.2f}%, INT8 {best:.2f}%, {len(probed)} of {len(candidates)} nodes probed); "
        "try quantize.calibration.method=entropy or percentile, more calibration samples, a larger "
        f"quantize.max_float_nodes, {QAT_HINT}a looser quantize.max_drop, or ship the FP32/FP16 artifact"
    )
    if raise_on_miss:
        raise ParityError(message)
    if not in_float:  # nothing was probed: the plain PTQ graph is the attempt
        best, path = measure([])
    return BudgetOutcome(list(in_float), best, path, sensitivity, count, met=False, message=message)
