#!/bin/bash
# v25e: partials out through a per-consumer buffer (stage freed before the stores) against v25a's epilogue
export PYTHONPATH=$PWD
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_e.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_e.txt; grep -E "FAILED|Error|assert" $OUT/gpu_tests_ws_e.txt | head -8
OUT=$OUT timeout 200 python3 benchmarks/prefill_ab.py ws > $OUT/prefill_ab_ws_e.txt 2>&1; echo "ab rc=$?"; grep "^{'off'" $OUT/prefill_ab_ws_e.txt; mv $OUT/prefill_ab.json $OUT/prefill_ab_ws_e.json
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/prefill_ab_ws_e.json")):
    print(r["P"], {k: [(x["rel_l2"], x["finite"]) for x in v if isinstance(x, dict)][:1] for k, v in r["ws"].items()})
PY
