#!/bin/bash
# v27c: v27b's A/B again (v27b's index_ab.py could not import profile_decode.py: a stale import, mended)
export PYTHONPATH=$PWD
OUT=$OUT timeout 300 python3 benchmarks/index_ab.py ws > $OUT/index_ab_ws_c.txt 2>&1; echo "ab rc=$?"; grep "prefill index ws" $OUT/index_ab_ws_c.txt | cut -c1-400; mv $OUT/index_ab.json $OUT/index_ab_ws_c.json; tail -3 $OUT/index_ab_ws_c.txt
