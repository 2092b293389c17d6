#!/bin/bash
# v30f: v30e's crossover again with each call also timed by events behind the matmul lead (the host ahead: the
# KV-outer form's host work exceeds its GPU work at small chunks, which do_bench then times)
export PYTHONPATH=$PWD
OUT=$OUT timeout 400 python3 benchmarks/qouter_ab.py --crossover --rounds 2 --prefixes 32768,1048576 --chunks 512,1024,1280,1536,1792,2048 > $OUT/qouter_crossover_f.txt 2>&1; echo "crossover rc=$?"; grep crossover: $OUT/qouter_crossover_f.txt; tail -3 $OUT/qouter_crossover_f.txt | cut -c1-300
mv $OUT/qouter_crossover.json $OUT/qouter_crossover_f.json
