#!/bin/bash
# v28a: both session-19 experiment patches applied (Q in registers behind index_ws._Q_REGS; KV-outer stores without branches):
# GPU tests of both Gluon kernels, then index_ab.py ws (Triton / Gluon 128 / 256, with and without Q in registers)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $OUT/gpu.txt; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu.txt; cat $OUT/gpu.txt
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_ws.py > $OUT/gpu_tests_ix_a.txt 2>&1; echo "ix tests rc=$?"; tail -1 $OUT/gpu_tests_ix_a.txt; grep -E "FAILED|Error|Mismatch" $OUT/gpu_tests_ix_a.txt | head -12
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_a.txt 2>&1; echo "ws tests rc=$?"; tail -1 $OUT/gpu_tests_ws_a.txt; grep -E "FAILED|Error|Mismatch" $OUT/gpu_tests_ws_a.txt | head -12
OUT=$OUT timeout 240 python3 benchmarks/index_ab.py ws > $OUT/index_ab_ws_a.txt 2>&1; echo "ab rc=$?"; grep "prefill index ws" $OUT/index_ab_ws_a.txt | cut -c1-400; mv $OUT/index_ab.json $OUT/index_ab_ws_a.json; tail -2 $OUT/index_ab_ws_a.txt | cut -c1-300
