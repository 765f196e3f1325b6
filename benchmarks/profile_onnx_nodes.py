"""Where an ONNX model's batch-1 time goes: ONNX Runtime's own profiler, median microseconds per node.

Used to explain INT8 vs FP32 speed-ups (BENCHMARKS.md, issue 4): run it on both artifacts of a pair.

    python benchmarks/profile_onnx_nodes.py runs/quickstart/export/model.onnx
    python benchmarks/profile_onnx_nodes.py runs/quickstart/quantize/model.int8.onnx --runs 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort


def profile(path: Path, runs: int, threads: int) -> tuple[float, list[tuple[str, str, float]]]:
    """(median model run µs, [(node name, op type, median µs)] in execution order)."""
    with tempfile.TemporaryDirectory(prefix="cidpipe-prof-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        x = np.random.default_rng(0).standard_normal([1, *first.shape[1:]]).astype(np.float32)
        for _ in range(runs):
            session.run(None, {first.name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[str, list[float]] = defaultdict(list)
    op_of: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[event["name"]].append(event["dur"])
            op_of[event["name"]] = event["args"]["op_name"]
    model_runs = [e["dur"] for e in events if e.get("name") == "model_run"]
    nodes = [(name.removesuffix("_kernel_time"), op_of[name], float(np.median(durations)))
             for name, durations in per_node.items()]
    return float(np.median(model_runs)), nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    run_us, nodes = profile(args.model, args.runs, args.threads)
    print(f"{args.model}: model run median {run_us:.0f} µs (profiling adds overhead), "
          f"sum of node medians {sum(n[2] for n in nodes):.0f} µs")
    print("| µs | op | node |\n|---:|---|---|")
    for name, op, us in nodes:
        print(f"| {us:.0f} | {op} | {name} |")


if __name__ == "__main__":
    main()
