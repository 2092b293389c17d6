#!/bin/bash
# v29j: the shipped rule (one wave from 8 one-token tiles) on the GPU: its plan tests, and decode_ab.py fp8rule at
# 8 x 1M (one wave) and 2 x 1M (the old rule)
export PYTHONPATH=$PWD
timeout 40 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_score_forms.py -k "split_cap or rule_at" > $OUT/gpu_tests_j.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_j.txt
OUT=$OUT timeout 60 python3 benchmarks/decode_ab.py fp8rule --fp8 --points 8x1048576,2x1048576 > $OUT/decode_ab_fp8rule_j.txt 2>&1; echo "ab rc=$?"; tail -4 $OUT/decode_ab_fp8rule_j.txt
