#!/bin/bash
# v30c: the query-outer form as one pipelined loop of sub-blocks (main_branch._Q_OUTER_SUB): its GPU tests
# (bf16 included), then qouter_ab.py's launch variants against the whole-block form, back to back and behind
# the suite's matmul lead, at decode 64 x 128K / 64 x 32K, MTP 8 x 128K q 8 and a 1024-token chunk after 32K
export PYTHONPATH=$PWD
MSA_KERNEL_EXAMPLES=4 timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_q_outer_sub.py tests/unit/test_workspace_option.py tests/unit/test_decode_graph.py tests/unit/test_slot_sub.py > $OUT/gpu_tests_c.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_c.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_c.txt | head -10
OUT=$OUT timeout 330 python3 benchmarks/qouter_ab.py > $OUT/qouter_ab_c.txt 2>&1; echo "ab rc=$?"; cat $OUT/qouter_ab_c.txt | cut -c1-300
