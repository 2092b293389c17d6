#!/bin/bash
# v27d: the Gluon prefill index scan on 256-row tiles (index_ws._TILE_ROWS) - GPU tests, A/B Triton / Gluon 128 / Gluon 256
export PYTHONPATH=$PWD
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_ws.py > $OUT/gpu_tests_ix_d.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ix_d.txt; grep -E "FAILED|Error|Mismatch" $OUT/gpu_tests_ix_d.txt | head -12
OUT=$OUT timeout 300 python3 benchmarks/index_ab.py ws > $OUT/index_ab_ws_d.txt 2>&1; echo "ab rc=$?"; grep "prefill index ws" $OUT/index_ab_ws_d.txt | cut -c1-330; mv $OUT/index_ab.json $OUT/index_ab_ws_d.json; tail -2 $OUT/index_ab_ws_d.txt | cut -c1-300
