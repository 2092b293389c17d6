#!/bin/bash
# v25f: producer entry loads before the copies (one round trip a tile), consumer store coordinates likewise
export PYTHONPATH=$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_f.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_f.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_f.txt | head -8
OUT=$OUT timeout 200 python3 benchmarks/prefill_ab.py ws > $OUT/prefill_ab_ws_f.txt 2>&1; echo "ab rc=$?"; grep "^{'off'" $OUT/prefill_ab_ws_f.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_ws_f.json
