#!/bin/bash
# v25b: ping-pong consumers, producer metadata a tile ahead, split empty barriers
export PYTHONPATH=$PWD
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_b.txt 2>&1; echo "tests rc=$?"; tail -3 $OUT/gpu_tests_ws_b.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_b.txt | head -8
OUT=$OUT timeout 360 python3 benchmarks/prefill_ab.py ws > $OUT/prefill_ab_ws_b.txt 2>&1; echo "ab rc=$?"; grep "^{'off'" $OUT/prefill_ab_ws_b.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_ws_b.json
