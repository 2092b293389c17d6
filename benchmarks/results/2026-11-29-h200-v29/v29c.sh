#!/bin/bash
# v29c: v29b again with the loop-carried fix (v29b's kernel stored every tile's partials to the program's first
# tile's rows: its tests failed): the KV-outer consumers store the previous tile's O while the tensor cores run
# the next tile's S (NOTES v29b), against HEAD 0f0665c's msa_sgl (carried as benchmarks/_scratch/old29): the
# kernel's GPU tests, prefill_ab.py in two interleaved rounds, the timeline from inside the new kernel
export PYTHONPATH=$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_c.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_c.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_ws_c.txt | head -10
for r in 1 2; do for t in old new; do
  if [ $t = old ]; then PP=$PWD/benchmarks/_scratch/old29:$PWD; else PP=$PWD; fi
  PYTHONPATH=$PP AB_POINTS=0,114688,1032192 OUT=$OUT timeout 100 python3 benchmarks/prefill_ab.py $t >> $OUT/prefill_ab_c.txt 2>&1; echo "ab $t$r rc=$?"
done; done
python3 -c "
import json
for x in json.load(open('$OUT/prefill_ab.json')): print(x['label'], x['P'], 'main %.3f partial %.3f chunk %.3f' % (x['main_ms'], x['partial_ms'], x['chunk_ms']), x['checksum'])"
mv $OUT/prefill_ab.json $OUT/prefill_ab_c.json
OUT=$OUT timeout 120 python3 benchmarks/ws_timeline.py > $OUT/ws_timeline_c.txt 2>&1; echo "timeline rc=$?"; mv $OUT/ws_timeline.json $OUT/ws_timeline_c.json
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/ws_timeline_c.json")):
    print(r["P"], "plain", round(r["plain_ms"], 3), "stamped", round(r["stamped_ms"], 3))
    for role, v in r["roles"].items():
        print("  ", role, {k: round(x["median"]) for k, x in v["intervals"].items()})
PY
