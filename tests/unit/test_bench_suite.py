"""The pytest-benchmark suite (benchmarks/test_bench_kernels.py) and its table
(benchmarks/bench_table.py): on a CPU the suite runs at toy sizes through Triton's interpreter,
eagerly, without SGLang - its plumbing, so it does not rot between GPU runs; the table is checked
on a JSON of known numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_plots  # noqa: E402
import bench_table  # noqa: E402

V22 = ROOT / "benchmarks" / "results" / "2026-11-28-h100-v22" / "bench.json"  # a GPU run of the suite


def _bench(name, group, median_s, **info):
    return dict(name=name, group=group, stats=dict(median=median_s), extra_info=info)


def test_bench_table_per_step_time_rate_and_ratio_to_msa_sgl():
    bench = dict(machine_info=dict(gpu="H100", driver="580", torch="2.11", triton="3.6"), benchmarks=[
        _bench("test_prefill_msa[P0]", "prefill P=0", 0.004, steps=1, flops=4e12),
        _bench("test_prefill_sglang[P0-all]", "prefill P=0", 0.010, steps=1, flops=4e12),
        _bench("test_decode_msa[b1_ctx32768-bf16]", "decode b=1", 0.002, steps=100, bytes=2e7),
        _bench("test_decode_msa[b1_ctx32768-fp8]", "decode b=1", 0.0015, steps=100, bytes=1e7),
        _bench("test_decode_dense[b1_ctx32768]", "decode b=1", 0.003, steps=50, bytes=6e7, backend="cudnn"),
    ])
    r = bench_table.rows(bench)
    assert [e[0] for e in r["prefill P=0"]] == ["prefill_msa", "prefill_sglang all"]
    label, ms, rate, unit, _, wall = r["decode b=1"][0]
    assert (label, unit) == ("decode_msa bf16", "GB/s") and ms == pytest.approx(0.02) and rate == pytest.approx(1000)
    assert r["prefill P=0"][0][2] == pytest.approx(1000) and r["prefill P=0"][0][3] == "TFLOP/s"
    text = bench_table.table(bench)
    assert text.splitlines()[0] == "gpu H100, driver 580, torch 2.11, triton 3.6"
    assert wall == ms  # no event times: the wall clock
    assert "| prefill_sglang all | 10.0000 | 400 TFLOP/s | 2.50 | 10.0000 | - |" in text
    assert "| decode_msa fp8 | 0.0150 | 667 GB/s | 0.75 | 0.0150 | - |" in text
    assert "| decode_dense (cudnn) | 0.0600 | 1000 GB/s | 3.00 | 0.0600 | - |" in text
    assert "multi-token" not in text  # no q=... group: no MTP lines


def test_bench_table_prompt_lines_measured_or_scaled_dense(tmp_path):
    bench = dict(benchmarks=[
        _bench("test_prompt_msa[N131072]", "prompt N=131072 C=16384", 0.070, steps=1, N=131072, flops=1e13),
        _bench("test_prompt_dense[N131072]", "prompt N=131072 C=16384", 0.490, steps=1, N=131072, flops=1e14,
               backend="cudnn"),
        _bench("test_prompt_dense[N262144]", "prompt N=262144 C=16384", 2.000, steps=1, N=262144, flops=4e14,
               backend="cudnn"),
        _bench("test_prompt_msa[N1048576]", "prompt N=1048576 C=16384", 1.400, steps=1, N=1048576, flops=1e14),
    ])
    assert bench_table._label("test_prompt_msa[N131072]") == "prompt_msa"
    assert bench_table.prompt_lines(bench) == [
        "### whole prompts against dense", "",
        "* N=131072: msa_sgl 70.0 ms, dense 490.0 ms (measured) = 7.00x (wall clock: msa_sgl 70.0 ms)",
        "* N=1048576: msa_sgl 1400.0 ms, dense 32000.0 ms (262144 tokens' x 16) = 22.86x"
        " (wall clock: msa_sgl 1400.0 ms)", ""]
    assert "| prompt_dense (cudnn) | 490.0000 | 204 TFLOP/s | 7.00 | 490.0000 | - |" in bench_table.table(bench)
    assert bench_plots.series(bench)["prompt"]["prompt_dense"] == {131072: 490.0, 262144: 2000.0}
    pytest.importorskip("matplotlib")
    assert bench_plots.plot(bench, tmp_path) == ["prompt_vs_length.png"]


def test_bench_table_takes_event_times_where_recorded():
    # GPU runs record CUDA-event rounds with the host ahead (extra_info event_ms): the table's time
    # and ratios are their median per step, the wall clock (stats) its own column
    bench = dict(benchmarks=[
        _bench("test_prompt_msa[N131072]", "prompt N=131072 C=16384", 0.046, steps=1, N=131072, flops=1e13,
               event_ms=[42.0, 41.0, 44.0], host_ahead=2),  # one round with the host behind
        _bench("test_prompt_dense[N131072]", "prompt N=131072 C=16384", 0.4915, steps=1, N=131072, flops=1e14,
               backend="cudnn", event_ms=[490.0, 491.0, 492.0, 489.0], host_ahead=4),
        _bench("test_decode_msa[b1_ctx32768-bf16]", "decode b=1", 0.002, steps=100, bytes=2e7,
               event_ms=[1.8, 1.9], host_ahead=2),
    ])
    r = bench_table.rows(bench)
    assert [(e[0], e[1], e[5]) for e in r["prompt N=131072 C=16384"]] == [
        ("prompt_msa", 42.0, pytest.approx(46.0)), ("prompt_dense (cudnn)", 490.5, pytest.approx(491.5))]
    assert r["decode b=1"][0][1] == pytest.approx(0.0185) and r["decode b=1"][0][5] == pytest.approx(0.02)
    text = bench_table.table(bench)
    assert "| prompt_dense (cudnn) | 490.5000 | 204 TFLOP/s | 11.68 | 491.5000 | 4/4 |" in text
    assert "| prompt_msa | 42.0000 | 238 TFLOP/s | 1.00 | 46.0000 | 2/3 |" in text
    assert "* N=131072: msa_sgl 42.0 ms, dense 490.5 ms (measured) = 11.68x (wall clock: msa_sgl 46.0 ms)" in text
    assert bench_plots.series(bench)["prompt"]["prompt_msa"] == {131072: 42.0}


def test_bench_table_mtp_lines_divide_by_the_one_token_group():
    bench = dict(benchmarks=[
        _bench("test_decode_msa[b1_ctx131072-bf16]", "decode b=1 ctx=131072", 0.002, steps=100, bytes=1e8),
        _bench("test_decode_dense[b1_ctx131072]", "decode b=1 ctx=131072", 0.006, steps=100, bytes=1e9),
        _bench("test_decode_msa[b1_ctx131072_q8-bf16]", "decode b=1 ctx=131072 q=8", 0.0035, steps=100, bytes=2e8),
        _bench("test_decode_msa[b8_ctx131072_q8-bf16]", "decode b=8 ctx=131072 q=8", 0.01, steps=100, bytes=2e8),
    ])
    assert bench_table._label("test_decode_msa[b1_ctx131072_q8-bf16]") == "decode_msa bf16"
    lines = bench_table.mtp_lines(bench)  # b=8 has no one-token group: no line
    assert lines == ["### multi-token decode against one token", "",
                     "* decode_msa bf16, b=1 ctx=131072: q_len 8 / q_len 1 = 0.0350 / 0.0200 ms = 1.75x", ""]
    assert bench_table.table(bench).endswith("\n".join(lines))


def test_bench_plots_series_are_the_tables_numbers(tmp_path):
    """bench_plots.series reads the same per-step times as bench_table (every entry of a GPU run,
    placed by its context and batch), and plot() writes the three figures."""
    bench = json.loads(V22.read_text())
    s = bench_plots.series(bench)
    n = 0
    for group, entries in bench_table.rows(bench).items():
        for label, ms, rate, _, _, _ in entries:
            label = label.split(" (")[0]  # dense entries without their backend
            kind, point = group.split(" ", 1)
            if kind == "prefill":
                ctx = int(point.split("P=")[1]) + int(point.split("C=")[1].split()[0])
                assert s["prefill"][label][ctx] == pytest.approx(ms), (group, label)
                if label != "prefill_dense":
                    assert s["rate"][label][ctx] == pytest.approx(rate)
            else:
                batch, ctx = (int(x.split("=")[1]) for x in point.split())
                assert s["decode"][batch][label][ctx] == pytest.approx(ms), (group, label)
            n += 1
    assert n == len(bench["benchmarks"]) == 40
    assert s["prefill"]["prefill_msa"][131072] == pytest.approx(10.5329, abs=1e-4)  # bench.md of that run
    assert s["decode"][1]["decode_msa bf16"][1 << 20] == pytest.approx(0.1047, abs=1e-4)
    pytest.importorskip("matplotlib")
    written = bench_plots.plot(bench, tmp_path)
    assert written == ["prefill_vs_context.png", "tflops_vs_context.png", "decode_vs_context.png"]
    assert all((tmp_path / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in written)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the GPU runs the suite at M3 shapes (benchmarks/README.md)")
def test_bench_suite_runs_on_the_cpu(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        str(ROOT / "benchmarks" / "test_bench_kernels.py"), "--benchmark-enable",
                        f"--benchmark-json={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    bench = json.loads(out.read_text())
    groups = bench_table.rows(bench)
    assert set(groups) == {"prefill C=48 P=0", "prefill C=48 P=96", "prompt N=96 C=48", "decode b=2 ctx=200",
                           "decode b=2 ctx=200 q=3"}
    labels = {g: [e[0] for e in v] for g, v in groups.items()}
    assert labels["decode b=2 ctx=200"] == ["decode_msa bf16", "decode_msa fp8", "decode_dense (math)"]
    assert labels["decode b=2 ctx=200 q=3"] == ["decode_msa bf16", "decode_msa fp8"]  # dense, SGLang: one token
    for g in ("prefill C=48 P=0", "prefill C=48 P=96"):
        assert sorted(labels[g]) == ["prefill_dense (math)", "prefill_msa", "prefill_msa_fp8", "prefill_msa_index",
                                  "prefill_msa_index_fp8", "prefill_msa_main", "prefill_msa_wrapper"]
    assert labels["prompt N=96 C=48"] == ["prompt_msa", "prompt_dense (math)"]
    assert all(e[1] > 0 and e[2] > 0 for v in groups.values() for e in v)
    assert bench_table.prompt_lines(bench)[2].startswith("* N=96: msa_sgl ")
    fp8 = [b["extra_info"]["same_selection_rows_as_bf16"] for b in bench["benchmarks"] if "fp8" in b["name"]
           and b["name"].startswith("test_prefill")]
    assert len(fp8) == 4 and all(0 <= x <= 1 for x in fp8)
    mtp = bench_table.mtp_lines(bench)
    assert [line.split(":")[0] for line in mtp[2:4]] == ["* decode_msa bf16, b=2 ctx=200", "* decode_msa fp8, b=2 ctx=200"]
    assert bench["machine_info"]["triton"]
