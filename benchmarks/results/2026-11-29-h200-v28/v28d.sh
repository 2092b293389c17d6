#!/bin/bash
# v28d: the slot merge's launch variants (merge_ab.py); the suite's prompts and chunks with SGLang 0.5.23, timed by
# CUDA events with the host ahead (and by wall clock, as before)
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
OUT=$OUT timeout 90 python3 benchmarks/merge_ab.py 0 114688 > $OUT/merge_ab_d.txt 2>&1; echo "merge rc=$?"; cut -c1-400 $OUT/merge_ab_d.txt | tail -4; mv $OUT/merge_ab.json $OUT/merge_ab_d.json
timeout 230 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prompt" --benchmark-enable --benchmark-json=$OUT/bench_prompt.json > $OUT/bench_prompt_run.txt 2>&1; echo "prompt rc=$?"; tail -1 $OUT/bench_prompt_run.txt
timeout 170 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prefill and not flash and not fp8 and not wrapper" --benchmark-enable --benchmark-json=$OUT/bench_prefill.json > $OUT/bench_prefill_run.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_prefill_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prompt.json > $OUT/bench_prompt.md 2>&1; grep -v "^$" $OUT/bench_prompt.md | tail -14
python3 benchmarks/bench_table.py $OUT/bench_prefill.json > $OUT/bench_prefill.md 2>&1; grep -E "^###|prefill_msa \||prefill_sglang all|prefill_msa_main|prefill_msa_index|prefill_dense \(" $OUT/bench_prefill.md | cut -c1-200
python3 -c "
import json
for f in ('bench_prompt', 'bench_prefill'):
    for b in json.load(open('$OUT/' + f + '.json'))['benchmarks']:
        print(b['name'], 'host_ahead', b['extra_info'].get('host_ahead'), 'of', len(b['extra_info'].get('event_ms', [])))
"
