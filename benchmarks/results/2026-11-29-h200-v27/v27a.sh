#!/bin/bash
# v27a: the softmax of NOTES v26j (scale in the exponent's FFMA, a real branch for the mask) - GPU tests,
# A/B against 855421a's msa_sgl (carried as benchmarks/_scratch/old855), timeline
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $OUT/gpu.txt; python3 -c "import torch, triton; print(torch.__version__, triton.__version__)" >> $OUT/gpu.txt; cat $OUT/gpu.txt
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/unit/test_kv_outer_ws.py > $OUT/gpu_tests_ws_a.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_ws_a.txt; grep -E "FAILED|Error" $OUT/gpu_tests_ws_a.txt | head -8
for r in 1; do
for t in old new; do
  if [ $t = old ]; then PP=$PWD/benchmarks/_scratch/old855:$PWD; else PP=$PWD; fi
  PYTHONPATH=$PP AB_POINTS=0,114688,1032192 OUT=$OUT timeout 170 python3 benchmarks/prefill_ab.py pipe > $OUT/prefill_ab_pipe_$t.txt 2>&1; echo "ab $t rc=$?"; grep -E "^\{'triton'|msa_sgl'" $OUT/prefill_ab_pipe_$t.txt | cut -c1-200; mv $OUT/prefill_ab.json $OUT/prefill_ab_pipe_$t.json
done; done
OUT=$OUT timeout 150 python3 benchmarks/ws_timeline.py > $OUT/ws_timeline_a.txt 2>&1; echo "timeline rc=$?"; mv $OUT/ws_timeline.json $OUT/ws_timeline_a.json
python3 - <<'PY'
import json, os
for r in json.load(open(os.environ["OUT"] + "/ws_timeline_a.json")):
    print(r["P"], r["kernel"], "plain %.3f stamped %.3f ms" % (r["plain_ms"], r["stamped_ms"]))
    for role, d in r["roles"].items():
        print("  role", role, " ".join("%s %.0f" % (k, v["median"]) for k, v in d["intervals"].items()))
PY
