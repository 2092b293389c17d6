#!/bin/bash
# v27e: the Gluon prefill index scan with turns (index_ws._TURNS) - GPU tests, A/B Triton / Gluon 128 / Gluon 256 / with turns
export PYTHONPATH=$PWD
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_ws.py > $OUT/gpu_tests_ix_e.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ix_e.txt; grep -E "FAILED|Error|Mismatch" $OUT/gpu_tests_ix_e.txt | head -12
OUT=$OUT timeout 300 python3 benchmarks/index_ab.py ws > $OUT/index_ab_ws_e.txt 2>&1; echo "ab rc=$?"; grep "prefill index ws" $OUT/index_ab_ws_e.txt | cut -c1-330; mv $OUT/index_ab.json $OUT/index_ab_ws_e.json; tail -2 $OUT/index_ab_ws_e.txt | cut -c1-300
