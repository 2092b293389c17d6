#!/bin/bash
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=/tmp/site:$PWD
timeout 330 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py --benchmark-enable --benchmark-json=$OUT/bench.json > $OUT/bench_run.txt 2>&1; echo "bench rc=$?"; tail -3 $OUT/bench_run.txt
python3 benchmarks/bench_table.py $OUT/bench.json > $OUT/bench.md 2>&1; cat $OUT/bench.md | head -80
timeout 150 python3 benchmarks/host_time.py parts > $OUT/host_parts_v22.txt 2>&1; echo "parts rc=$?"; head -40 $OUT/host_parts_v22.txt
PYTHONPATH=$PWD timeout 130 python3 benchmarks/_scratch/host_ab_v22.py > $OUT/host_ab_v22.txt 2>&1; echo "ab rc=$?"; cat $OUT/host_ab_v22.txt | tail -8
