#!/bin/bash
# Stage 2: the better stage-1 runs continued to 18 CPU-minutes, then the slow-per-step sizes for 3 CPU-minutes.
cd /work/ttq
export OMP_NUM_THREADS=1
PY=/work/main/.venv/bin/python
for c in demo_tf lr5e-3_cos demo; do
  taskset -c 1 $PY -m bench.time_to_quality --candidate $c --budget-min 18 --eval-every-min 2 --resume
done
for c in wide_2x64 p4_2x32; do
  taskset -c 1 $PY -m bench.time_to_quality --candidate $c --budget-min 3 --eval-every-min 2
done
