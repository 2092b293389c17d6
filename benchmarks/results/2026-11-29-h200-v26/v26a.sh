#!/bin/bash
# v26a: the pipelined Gluon consumers - GPU tests, then prefill_ab.py pipe (Triton / v25 / pipe / pipe_diag)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv > $OUT/gpu.txt 2>&1
python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu.txt
cat $OUT/gpu.txt
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_a.txt 2>&1; echo "tests rc=$?"; tail -2 $OUT/gpu_tests_ws_a.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_a.txt | head -8
OUT=$OUT timeout 300 python3 benchmarks/prefill_ab.py pipe > $OUT/prefill_ab_pipe_a.txt 2>&1; echo "ab rc=$?"; grep "^{'triton'" $OUT/prefill_ab_pipe_a.txt; tail -2 $OUT/prefill_ab_pipe_a.txt | cut -c1-300; mv $OUT/prefill_ab.json $OUT/prefill_ab_pipe_a.json
