#!/bin/bash
# v26d: turns between the pipelined consumers, entry counts a tile further ahead
export PYTHONPATH=$PWD
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_d.txt 2>&1; echo "tests rc=$?"; tail -2 $OUT/gpu_tests_ws_d.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_d.txt | head -8
OUT=$OUT timeout 200 python3 benchmarks/ws_timeline.py > $OUT/ws_timeline_d.txt 2>&1; echo "timeline rc=$?"; tail -3 $OUT/ws_timeline_d.txt | cut -c1-300; mv $OUT/ws_timeline.json $OUT/ws_timeline_d.json
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/ws_timeline_d.json")):
    print(r["P"], r["kernel"], "plain %.3f stamped %.3f ms" % (r["plain_ms"], r["stamped_ms"]))
    for role, d in r["roles"].items():
        print("  role", role, " ".join("%s %.0f" % (k, v["median"]) for k, v in d["intervals"].items()))
PY
OUT=$OUT timeout 300 python3 benchmarks/prefill_ab.py pipe > $OUT/prefill_ab_pipe_d.txt 2>&1; echo "ab rc=$?"; grep "^{'triton'" $OUT/prefill_ab_pipe_d.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_pipe_d.json
