#!/usr/bin/env bash
# Everything a GPU session checks, in one call, each part under its own time limit so one slow part cannot
# cost the others (about 7 minutes on an H100 in all). Logs and Markdown tables go to $OUT (or
# /tmp/gpu_session), and the tables are printed again at the end.
#
#   bash benchmarks/gpu_session.sh          # on the GPU machine, from the repository root
#
# The GPU image has torch but not cidpipe's pydantic and typer: wheels in .whl/ are installed to /tmp/site
# first when that folder exists. Made here (ignored by git, carried with the call) with:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5 typing_extensions==4.16.0 typer==0.29.2 annotated-doc==0.0.7
# Logs of the runs behind BENCHMARKS.md's GPU section: benchmarks/results/h100-2026-11-26/.
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD:$PWD/export${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

part() {  # part NAME SECONDS COMMAND...: run under a time limit, log to $OUT/NAME.log, report the status
    local name=$1 limit=$2
    shift 2
    local began=$SECONDS
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc $rc in $((SECONDS - began)) s" | tee -a "$OUT/summary.txt"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.version.cuda)"
    nproc
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

part pytest_gpu 110 python3 -m pytest -q -p no:cacheprovider tests/gpu -rs
part gpu_check 50 python3 benchmarks/gpu_check.py
part compile 110 python3 benchmarks/gpu_check.py --compile --with-reference --iters 30
# The real pipeline on a full-size synthetic CIFAR-100 (the files of the real format): epoch times of
# `fit` itself, evaluation and checkpointing included, for the projected 240-epoch wall time; then the
# student again with the step replayed as CUDA graphs (the teacher stage is cached by then).
python3 benchmarks/make_synthetic_cifar100.py /tmp/cifar100 >/dev/null
c100=(python3 -m cidpipe run recipes/cifar100_resnet56_resnet20.yaml --device cuda --out /tmp/c100runs
      --set data.root=/tmp/cifar100 --set teacher.train.epochs=1 --set student.train.epochs=3
      --set distill.cid.warmup_epochs=1)
part pipeline 140 "${c100[@]}"
# TORCH_LOGS: when and why graphs are re-recorded or the step recompiled (a tiny model lost ~0.6 s/epoch).
part pipeline_graphs 200 env TORCH_LOGS=cudagraphs,recompiles "${c100[@]}" --set student.train.compile=true \
    --set student.train.compile_mode=reduce-overhead
part cid_loss 40 python3 benchmarks/bench_cid_loss.py --device cuda --step --teacher resnet32x4 \
    --student resnet8x4 --step-iterations 20 --repeats 9

echo
for name in gpu_check cid_loss compile; do
    echo "---- $name"
    grep -E '^(\||- |###)' "$OUT/$name.log" || tail -5 "$OUT/$name.log"
done
echo "---- pytest_gpu"
grep -E '^(FAILED|ERROR|SKIPPED)|passed|failed' "$OUT/pytest_gpu.log"
for name in pipeline pipeline_graphs; do
    echo "---- $name epochs"
    grep -iE 'epoch [0-9]+/[0-9]+:|exported|error|skipping cudagraphs|re-record|recompil' \
        "$OUT/$name.log" | cut -c1-200 | head -40
done
cat "$OUT/summary.txt"
