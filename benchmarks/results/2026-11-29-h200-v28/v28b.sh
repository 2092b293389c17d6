#!/bin/bash
# v28b: the KV-outer stores without branches (applied) against HEAD 87801e6's msa_sgl (carried as
# benchmarks/_scratch/old87): prefill_ab.py pipe; the index_ws tests not run on a GPU before (reference, 3 groups,
# plan choice); the Gluon scan's 128- / 256-row tiles at the cached prefixes between 16K and 112K
export PYTHONPATH=$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_ws.py -k "reference or hkv3 or plan_takes or leaves or as_the_triton or tile_order" > $OUT/gpu_tests_ix_b.txt 2>&1; echo "ix tests rc=$?"; tail -1 $OUT/gpu_tests_ix_b.txt; grep -E "FAILED|Error|Mismatch" $OUT/gpu_tests_ix_b.txt | head -12
for t in old new; do
  if [ $t = old ]; then PP=$PWD/benchmarks/_scratch/old87:$PWD; else PP=$PWD; fi
  PYTHONPATH=$PP AB_POINTS=0,114688,1032192 OUT=$OUT timeout 130 python3 benchmarks/prefill_ab.py pipe > $OUT/prefill_ab_pipe_$t.txt 2>&1; echo "ab $t rc=$?"; grep -E "^\{'triton'|msa_sgl'" $OUT/prefill_ab_pipe_$t.txt | cut -c1-200; mv $OUT/prefill_ab.json $OUT/prefill_ab_pipe_$t.json
done
AB_POINTS=32768,49152,65536,81920 OUT=$OUT timeout 120 python3 benchmarks/index_ab.py ws > $OUT/index_ab_ws_b.txt 2>&1; echo "ix ab rc=$?"; grep "prefill index ws" $OUT/index_ab_ws_b.txt | cut -c1-300; mv $OUT/index_ab.json $OUT/index_ab_ws_b.json
