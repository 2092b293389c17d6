#!/bin/bash
# v29b: the KV-outer consumers store the previous tile's O while the tensor cores run the next tile's S (NOTES
# v29b) against HEAD 0f0665c's msa_sgl (carried as benchmarks/_scratch/old29): the kernel's GPU tests,
# prefill_ab.py in two interleaved rounds, the timeline from inside the new kernel
export PYTHONPATH=$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_b.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_b.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_ws_b.txt | head -10
for r in 1 2; do for t in old new; do
  if [ $t = old ]; then PP=$PWD/benchmarks/_scratch/old29:$PWD; else PP=$PWD; fi
  PYTHONPATH=$PP AB_POINTS=0,114688,1032192 OUT=$OUT timeout 100 python3 benchmarks/prefill_ab.py $t > $OUT/prefill_ab_${t}$r.txt 2>&1; echo "ab $t$r rc=$?"; mv $OUT/prefill_ab.json $OUT/prefill_ab_${t}$r.json
  python3 -c "
import json,sys
for x in json.load(open('$OUT/prefill_ab_${t}$r.json')): print(x['label'], x['msa_sgl'][-40:], x['P'], 'main %.3f partial %.3f chunk %.3f' % (x['main_ms'], x['partial_ms'], x['chunk_ms']), x['checksum'])"
done; done
OUT=$OUT timeout 120 python3 benchmarks/ws_timeline.py > $OUT/ws_timeline_b.txt 2>&1; echo "timeline rc=$?"; tail -30 $OUT/ws_timeline_b.txt | cut -c1-300; mv $OUT/ws_timeline.json $OUT/ws_timeline_b.json
