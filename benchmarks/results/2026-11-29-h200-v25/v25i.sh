#!/bin/bash
# v25i: the review-mended Gluon tests on the GPU
export PYTHONPATH=$PWD
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py tests/unit/test_kv_outer_sub.py tests/unit/test_kv_outer_q_window.py > $OUT/gpu_tests_ws_i.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_i.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_i.txt | head -12
