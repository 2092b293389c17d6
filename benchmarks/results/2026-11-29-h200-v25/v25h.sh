#!/bin/bash
# v25h: causal mask on diagonal tiles only, scale folded into the exponent
export PYTHONPATH=$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_h.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_h.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_h.txt | head -8
OUT=$OUT timeout 200 python3 benchmarks/prefill_ab.py ws > $OUT/prefill_ab_ws_h.txt 2>&1; echo "ab rc=$?"; grep "^{'off'" $OUT/prefill_ab_ws_h.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_ws_h.json
