#!/bin/bash
# v28c: the Gluon scan's tile rows by the page table's width (index_ws.tile_rows): its plan tests and the
# tile-order tests; where the 128K prompt's time goes (profile_prompt.py: CUDA-event rounds, kernels by name,
# GPU busy against the span)
export PYTHONPATH=$PWD
timeout 100 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_ws.py -k "plan_takes or tile_order or as_the_triton" > $OUT/gpu_tests_ix_c.txt 2>&1; echo "ix tests rc=$?"; tail -1 $OUT/gpu_tests_ix_c.txt; grep -E "FAILED|Error|Mismatch" $OUT/gpu_tests_ix_c.txt | head -12
OUT=$OUT timeout 200 python3 benchmarks/profile_prompt.py 131072 > $OUT/profile_prompt_c.txt 2>&1; echo "profile rc=$?"; cut -c1-220 $OUT/profile_prompt_c.txt | head -60; mv $OUT/profile_prompt.json $OUT/profile_prompt_c.json
