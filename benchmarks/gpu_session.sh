#!/usr/bin/env bash
# Every GPU check issue 9 asks for, as one prepared command for a session lent a GPU (the device tool).
#
#   bash benchmarks/gpu_session.sh          # on the GPU machine: at most 10 minutes (its timeouts)
#   TINY=1 bash benchmarks/gpu_session.sh   # here, on CPU: checks the script itself (~1 minute)
#
# The lent machine has torch, transformers, safetensors, tensorboard, rich, pyyaml and pytest, not
# pydantic or datatrove: carry pydantic's wheels (pydantic, pydantic-core, annotated-types,
# typing-inspection) as the device README says and set PYTHONPATH before calling this. Logs go to
# $OUT (the device tool's folder that comes back), else /tmp/gpu-session.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-session}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
step() {  # name, seconds, command...: one check, its log in $OUT/<name>.log, its status in summary.txt
    local name=$1 limit=$2; shift 2
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    echo "$name: exit $?" | tee -a "$OUT/summary.txt"
}
if [ -n "${TINY:-}" ]; then
    step gpu_train_tiny 300 $PY benchmarks/gpu_train.py --tiny --variants eager,compile+model-loss
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" >> "$OUT/gpu.txt"
# throughput and MFU (goal >= 45%), chunked loss against the model's own, and the plan's memory estimate beside each
step gpu_train 330 $PY -m torch.distributed.run --nproc_per_node 1 benchmarks/gpu_train.py --steps 20 --warmup 6 \
    --variants compile,compile+model-loss,fsdp2+compile
# unlogged steps never synchronise the GPU (the loss's target positions are found on the CPU labels)
step sync_free 120 $PY -m pytest -q -p no:cacheprovider tests/train/test_loop.py -k synchronize
# bf16 loop, eager against compile, and exact resumption from a checkpoint on the GPU
step gpu_check_train 150 $PY benchmarks/gpu_check_train.py
