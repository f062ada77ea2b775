#!/bin/bash
# Stage 1 of the successive halving: each candidate 6 CPU-minutes on core 1, one after another.
cd /work/ttq
export OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
taskset -c 1 $PY -m bench.time_to_quality --time-steps 10 --candidate demo
taskset -c 1 $PY -m bench.time_to_quality --time-steps 10 --candidate demo_bf16
for c in demo demo_tf lr5e-3_cos b8_lr4e-3 deep_4x32 wide_2x64 p4_2x32; do
  taskset -c 1 $PY -m bench.time_to_quality --candidate $c --budget-min 6 --eval-every-min 2
done
