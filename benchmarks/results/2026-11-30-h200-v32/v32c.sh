#!/bin/bash
# v32c: the shipped state (tile_grid's tight bound, the partial kernel's grid splits-first for MTP tiles): plan,
# index, split-major, decode graph / wrapper, golden tests on the GPU; the suite's decode groups with SGLang 0.5.23
mkdir -p /tmp/site && tar -xJf .whl_gpu/sglang_bundle.tar.xz -C /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
MSA_KERNEL_EXAMPLES=4 timeout 200 python3 -m pytest -q -p no:cacheprovider tests/unit/test_index_score_forms.py tests/unit/test_index_splits.py tests/unit/test_metadata_host.py tests/unit/test_wrapper_workspace.py tests/unit/test_decode_graph.py tests/property/test_decode_wrapper.py tests/golden > $OUT/gpu_tests_c.txt 2>&1; echo "tests rc=$?"; tail -1 $OUT/gpu_tests_c.txt; grep -E "FAILED|ERROR" $OUT/gpu_tests_c.txt | head -10
export PYTHONPATH=/tmp/site:$PWD
timeout 260 python3 -m pytest -q -p no:cacheprovider -rs benchmarks/test_bench_kernels.py -k "decode" --benchmark-enable --benchmark-json=$OUT/bench_decode_c.json > $OUT/bench_decode_run_c.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/bench_decode_run_c.txt
python3 benchmarks/bench_table.py $OUT/bench_decode_c.json > $OUT/bench_decode_c.md 2>&1; grep -v "^$" $OUT/bench_decode_c.md | grep -E "^###|decode_msa|decode_sglang|decode_dense \(|q_len" | cut -c1-160
