#!/bin/bash
# v26b: per-partition timeline of the Gluon KV-outer kernels (clock64 stamps; benchmarks/ws_timeline.py)
export PYTHONPATH=$PWD
OUT=$OUT timeout 400 python3 benchmarks/ws_timeline.py > $OUT/ws_timeline_b.txt 2>&1; echo "timeline rc=$?"; tail -3 $OUT/ws_timeline_b.txt | cut -c1-600
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/ws_timeline.json")):
    print(r["P"], r["kernel"], "plain %.3f stamped %.3f ms" % (r["plain_ms"], r["stamped_ms"]), "programs", r["programs"])
    for role, d in r["roles"].items():
        print("  role", role, "tiles", d["tiles"], "median program cycles %.0f" % d["median_program_cycles"])
        for k, v in d["intervals"].items():
            print("    %-22s median %7.0f mean %7.0f share %.3f" % (k, v["median"], v["mean"], v["share"]))
PY
