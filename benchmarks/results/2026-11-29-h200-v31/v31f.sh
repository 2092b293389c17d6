#!/bin/bash
# v31f: smoke run after the graph capture moved into test_bench_kernels (capture_graph, graph_lead_ms): decode_ab.py
# --lead, qouter_ab.py's behind-the-lead column and the suite's decode entry at one point each
mkdir -p /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site benchmarks/_scratch/whl_bench/*.whl
export PYTHONPATH=$PWD
OUT=$OUT timeout 60 python3 benchmarks/decode_ab.py stages64 --lead --points 8x32768 > $OUT/smoke_f.txt 2>&1; echo "decode_ab rc=$?"; tail -3 $OUT/smoke_f.txt | cut -c1-160
OUT=$OUT timeout 60 python3 benchmarks/qouter_ab.py --rounds 1 --variants rule --points decode_64x32K >> $OUT/smoke_f.txt 2>&1; echo "qouter_ab rc=$?"; grep "us " $OUT/smoke_f.txt | cut -c1-160
rm -f $OUT/*.json
export PYTHONPATH=/tmp/site:$PWD
timeout 60 python3 -m pytest -q -p no:cacheprovider benchmarks/test_bench_kernels.py -k "test_decode_msa and b1_ctx32768" --benchmark-enable >> $OUT/smoke_f.txt 2>&1; echo "bench rc=$?"; tail -1 $OUT/smoke_f.txt
