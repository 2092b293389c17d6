#!/bin/bash
# v30h: smoke run of the scripts after their event loops moved into test_bench_kernels.lead_event_rounds (the
# suite's decode entry at one point, profile_decode.py --hot, qouter_ab.py --crossover), and clock_probe.py's fix
mkdir -p /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 60 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py -k "test_decode_msa and b1_ctx32768" --benchmark-enable --benchmark-json=$OUT/bench_smoke_h.json > $OUT/smoke_h.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/smoke_h.txt
python3 -c "import json; [print(b['name'], 'host_ahead', b['extra_info'].get('host_ahead'), 'event ms', sorted(b['extra_info']['event_ms'])[len(b['extra_info']['event_ms'])//2]) for b in json.load(open('$OUT/bench_smoke_h.json'))['benchmarks']]" | tee -a $OUT/smoke_h.txt
timeout 60 python3 benchmarks/profile_decode.py --hot --bf16-only --points 8x131072 >> $OUT/smoke_h.txt 2>&1; echo "profile rc=$?"; grep -E "sum of kernels|==" $OUT/smoke_h.txt | cut -c1-200
OUT=$OUT timeout 60 python3 benchmarks/qouter_ab.py --crossover --rounds 1 --prefixes 32768 --chunks 1024 >> $OUT/smoke_h.txt 2>&1; echo "crossover rc=$?"; grep crossover: $OUT/smoke_h.txt
rm -f $OUT/qouter_crossover.json
OUT=$OUT timeout 150 python3 benchmarks/clock_probe.py > $OUT/clock_probe_h.txt 2>&1; echo "probe rc=$?"; cut -c1-300 $OUT/clock_probe_h.txt | tail -6
mv $OUT/clock_probe.json $OUT/clock_probe_h.json 2>/dev/null
