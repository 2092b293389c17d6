#!/bin/bash
# v29i: the 8-bit decode scan's new split rule (4 programs an SM, one wave: index_branch._FP8_ONE_WAVE) against
# the old one (3, rounding up) and 4 rounding up (decode_ab.py fp8rule), then the GPU tests that plan 8-bit decode
# (it ran decode_ab.py fp8rule as it stood then: x3_ceil / x4_ceil / rule, "rule" being one wave at any tile
# count - now the "wave_any" variant; the shipped rule takes one wave from 8 tiles only)
export PYTHONPATH=$PWD
OUT=$OUT timeout 260 python3 benchmarks/decode_ab.py fp8rule --fp8 --points 8x1048576,8x131072,8x32768,64x131072,64x32768,16x131072,4x1048576,2x1048576,1x1048576 > $OUT/decode_ab_fp8rule.txt 2>&1; echo "ab rc=$?"; tail -12 $OUT/decode_ab_fp8rule.txt
MSA_KERNEL_EXAMPLES=4 timeout 200 python3 -m pytest -q -p no:cacheprovider tests/property/test_fp8_index.py tests/property/test_decode_wrapper.py tests/unit/test_decode_graph.py tests/unit/test_wrapper_workspace.py tests/unit/test_index_score_forms.py > $OUT/gpu_tests_i.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_i.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_i.txt | head -10
