#!/bin/bash
# v26i: review mends - the Gluon kernel's GPU tests (NaN-poisoned partials, forced program counts, decode-like tiles)
export PYTHONPATH=$PWD
timeout 230 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_i.txt 2>&1; echo "tests rc=$?"; tail -2 $OUT/gpu_tests_ws_i.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_i.txt | head -12
