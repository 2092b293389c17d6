#!/bin/bash
# v30e: the query-outer / KV-outer crossover (KV_OUTER_MIN_QUERIES = 2048, set in v5 before the Gluon KV-outer
# kernel and v30's pipelined query-outer loop) by chunk size after a 32K and a 1M prefix
export PYTHONPATH=$PWD
OUT=$OUT timeout 400 python3 benchmarks/qouter_ab.py --crossover --rounds 2 --prefixes 32768,1048576 --chunks 256,512,768,1024,1536,2048 > $OUT/qouter_crossover_e.txt 2>&1; echo "crossover rc=$?"; grep crossover: $OUT/qouter_crossover_e.txt; tail -3 $OUT/qouter_crossover_e.txt | cut -c1-300
mv $OUT/qouter_crossover.json $OUT/qouter_crossover_e.json
