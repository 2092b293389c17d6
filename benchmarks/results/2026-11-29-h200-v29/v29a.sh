#!/bin/bash
# v29a: the KV-outer kernel's GPU tests after the EXP2_EMU constexpr (default and exp2-on-FMA), then the A/B of
# exp2 all on MUFU / 1 in 2 / 1 in 4 by the polynomial (prefill_ab.py emu; NOTES v28g's prediction)
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv > $OUT/gpu.txt; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu.txt
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_ws.txt | head -10
OUT=$OUT timeout 300 python3 benchmarks/prefill_ab.py emu > $OUT/prefill_ab_emu.txt 2>&1; echo "ab rc=$?"; grep -v "^{'label" $OUT/prefill_ab_emu.txt | cut -c1-900; mv $OUT/prefill_ab.json $OUT/prefill_ab_emu.json
