#!/bin/bash
# v26c: pipelined consumers with the store rows a tile ahead, O x (1 / l), the producer's Q/K a tile ahead of V
export PYTHONPATH=$PWD
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_c.txt 2>&1; echo "tests rc=$?"; tail -2 $OUT/gpu_tests_ws_c.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_c.txt | head -8
OUT=$OUT timeout 200 python3 benchmarks/ws_timeline.py > $OUT/ws_timeline_c.txt 2>&1; echo "timeline rc=$?"; mv $OUT/ws_timeline.json $OUT/ws_timeline_c.json
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/ws_timeline_c.json")):
    print(r["P"], r["kernel"], "plain %.3f stamped %.3f ms" % (r["plain_ms"], r["stamped_ms"]))
    for role, d in r["roles"].items():
        print("  role", role, " ".join("%s %.0f" % (k, v["median"]) for k, v in d["intervals"].items()))
PY
OUT=$OUT timeout 300 python3 benchmarks/prefill_ab.py pipe > $OUT/prefill_ab_pipe_c.txt 2>&1; echo "ab rc=$?"; grep "^{'triton'" $OUT/prefill_ab_pipe_c.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_pipe_c.json
