#!/bin/bash
# v26g: v26f again with the SGLang bundle carried (v26f forgot it: no SGLang peer there) - the suite's prefill chunks and whole prompts
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 160 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prefill and not flash and not fp8 and not wrapper" --benchmark-enable --benchmark-json=$OUT/bench_prefill.json > $OUT/bench_prefill_run.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_prefill_run.txt
timeout 210 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "prompt" --benchmark-enable --benchmark-json=$OUT/bench_prompt.json > $OUT/bench_prompt_run.txt 2>&1; echo "prompt rc=$?"; tail -1 $OUT/bench_prompt_run.txt
python3 benchmarks/bench_table.py $OUT/bench_prefill.json > $OUT/bench_prefill.md 2>&1; grep -E "^###|prefill_msa \||prefill_sglang all|prefill_msa_main|prefill_dense \(" $OUT/bench_prefill.md
python3 benchmarks/bench_table.py $OUT/bench_prompt.json > $OUT/bench_prompt.md 2>&1; grep -v "^$" $OUT/bench_prompt.md | tail -22
