#!/bin/bash
# v25j: per-instruction stall sampling of one Gluon partial-kernel launch at P = 0 (SASS with counts), for the next session
export PYTHONPATH=$PWD
ncu --version | tail -1
timeout 170 ncu --kernel-name regex:kv_outer_ws --launch-skip 1 --launch-count 1 --section SourceCounters --section WarpStateStats --page source --print-source sass --csv python3 benchmarks/results/2026-11-29-h200-v25/ncu/driver_ncu_ws.py 0 > $OUT/ncu_ws_source_P0.csv 2> $OUT/ncu_ws_source_err.txt; echo "ncu rc=$?"; wc -c $OUT/ncu_ws_source_P0.csv; head -c 600 $OUT/ncu_ws_source_P0.csv; tail -3 $OUT/ncu_ws_source_err.txt
