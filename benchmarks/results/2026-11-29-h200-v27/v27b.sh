#!/bin/bash
# v27b: the Gluon prefill index scan (ops/index_ws.py) - GPU tests against the Triton kernel, A/B timing
export PYTHONPATH=$PWD
timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_ws.py -x > $OUT/gpu_tests_ix_b.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ix_b.txt; grep -E "FAILED|Error|assert|Mismatch" $OUT/gpu_tests_ix_b.txt | head -12
OUT=$OUT timeout 300 python3 benchmarks/index_ab.py ws > $OUT/index_ab_ws_b.txt 2>&1; echo "ab rc=$?"; grep "prefill index ws" $OUT/index_ab_ws_b.txt | cut -c1-400; mv $OUT/index_ab.json $OUT/index_ab_ws_b.json; tail -3 $OUT/index_ab_ws_b.txt
