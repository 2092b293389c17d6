"""Markdown table of a pytest-benchmark JSON from benchmarks/test_bench_kernels.py.

    python benchmarks/bench_table.py bench.json [> bench.md]

One table per group (one point): each entry (a dense baseline with its backend), its median
time per step (a round's median over its ``steps``; by CUDA events with the host's launches
queued ahead where the JSON has them, ``event_ms``, else by wall clock), its useful TFLOP/s or
GB/s of compulsory bytes, its time over msa_sgl's in the group (msa_sgl: test_prefill_msa,
test_prompt_msa, test_decode_msa[...-bf16]; > 1: msa_sgl is faster) and its wall-clock median
(a call then a synchronisation, from an idle GPU: host launch time included;
test_bench_kernels._timed), and in how many of the event rounds the host was ahead (all of the
round's launches issued before the matmul lead ended; "-" without event rounds). A round with
the host behind times host launch work too, as the wall clock does. The card, driver and versions come from the
JSON's machine_info (benchmarks/conftest.py adds them). Then each whole prompt's dense time over
msa_sgl's (measured, or the longest dense prompt scaled by N^2), and each multi-token decode
group's (``q=8``) time over its one-token group's.
"""

from __future__ import annotations

import json
import re
import statistics
import sys

POINT_ID = re.compile(r"^(P\d+|N\d+|b\d+_ctx\d+(_q\d+)?)$")  # the fixtures' ids: the group names the point
REFERENCE = ("prefill_msa", "prompt_msa", "decode_msa bf16")  # msa_sgl's entry of a group, by label


def _label(name: str) -> str:
    """test_decode_msa[b1_ctx32768-fp8] -> decode_msa fp8; test_prefill_msa[P0] -> prefill_msa."""
    base, _, params = name.partition("[")
    extra = [p for p in params.rstrip("]").split("-") if p and not POINT_ID.match(p)]
    return " ".join([base.removeprefix("test_")] + extra)


def step_ms(b: dict) -> tuple:
    """(ms per step by CUDA events where recorded else by wall clock, ms per step by wall clock)."""
    info = b.get("extra_info", {})
    steps = info.get("steps", 1)
    wall = b["stats"]["median"] * 1e3 / steps
    return (statistics.median(info["event_ms"]) / steps if info.get("event_ms") else wall), wall


def host_ahead(b: dict) -> str:
    """"k/n": event rounds with the host ahead of the GPU, of those recorded; "-" without event rounds."""
    info = b.get("extra_info", {})
    if not info.get("event_ms") or "host_ahead" not in info:
        return "-"
    return f"{info['host_ahead']}/{len(info['event_ms'])}"


def rows(bench: dict) -> dict:
    """{group: [(label, ms per step, rate, unit, name, wall ms per step)]} in the JSON's order."""
    out: dict = {}
    for b in bench["benchmarks"]:
        info = b.get("extra_info", {})
        ms, wall = step_ms(b)
        if "flops" in info:
            rate, unit = info["flops"] / ms / 1e9, "TFLOP/s"
        elif "bytes" in info:
            rate, unit = info["bytes"] / ms / 1e6, "GB/s"
        else:
            rate, unit = float("nan"), ""
        label = _label(b["name"]) + (f" ({info['backend']})" if "backend" in info else "")
        out.setdefault(b.get("group") or "", []).append((label, ms, rate, unit, b["name"], wall))
    return out


def table(bench: dict) -> str:
    lines = []
    mi = bench.get("machine_info", {})
    if mi.get("gpu"):
        lines.append(", ".join(f"{k} {mi[k]}" for k in ("gpu", "driver", "torch", "triton") if k in mi) + "\n")
    ahead = {b["name"]: host_ahead(b) for b in bench["benchmarks"]}
    for group, entries in rows(bench).items():
        ref = next((e[1] for e in entries if e[0] in REFERENCE), None)
        lines += [f"### {group}", "", "| | ms / step | rate | x msa_sgl | wall ms / step | host ahead |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, ms, rate, unit, name, wall in entries:
            ratio = f"{ms / ref:.2f}" if ref else "-"
            lines.append(f"| {label} | {ms:.4f} | {rate:.0f} {unit} | {ratio} | {wall:.4f} | {ahead[name]} |")
        lines.append("")
    lines += prompt_lines(bench)
    lines += mtp_lines(bench)
    return "\n".join(lines)


def prompt_lines(bench: dict) -> list:
    """Markdown lines of each whole prompt's dense time over msa_sgl's: the dense entry of its
    group, or where none ran, the longest measured dense prompt scaled by (N / N_dense)^2."""
    dense, msa, wall = {}, {}, {}
    for b in bench["benchmarks"]:
        n = b.get("extra_info", {}).get("N")
        if n is None:
            continue
        ms, w = step_ms(b)
        label = _label(b["name"])
        if label.startswith("prompt_dense"):
            dense[n] = ms
        elif label == "prompt_msa":
            msa[n], wall[n] = ms, w
    out = []
    m = max(dense, default=None)
    for n, (d, measured) in sorted(prompt_dense(dense, msa).items()):
        how = "measured" if measured else f"{m} tokens' x {(n / m) ** 2:g}"
        out.append(f"* N={n}: msa_sgl {msa[n]:.1f} ms, dense {d:.1f} ms ({how}) = {d / msa[n]:.2f}x"
                   f" (wall clock: msa_sgl {wall[n]:.1f} ms)")
    return ["### whole prompts against dense", ""] + out + [""] if out else []


def prompt_dense(dense: dict, lengths) -> dict:
    """{N: (dense ms, measured)} for each prompt length in ``lengths``: the measured dense time
    (``dense``: {N: ms}), or the longest measured one scaled by (N / N_dense)^2; none without any."""
    if not dense:
        return {}
    m = max(dense)
    return {n: (dense[n], True) if n in dense else (dense[m] * (n / m) ** 2, False) for n in lengths}


def mtp_lines(bench: dict) -> list:
    """Markdown lines of each multi-token decode group's time over its one-token group (same
    batch and context), per entry present in both (issue 4: q_len 8 under 2x of q_len 1)."""
    groups = rows(bench)
    out = []
    for group, entries in groups.items():
        head, sep, q = group.rpartition(" q=")
        if not sep or not group.startswith("decode") or head not in groups:
            continue
        one = {label: ms for label, ms, *_ in groups[head]}
        for label, ms, *_ in entries:
            if label in one:
                out.append(f"* {label}, {head.removeprefix('decode ')}: q_len {q} / q_len 1 = "
                           f"{ms:.4f} / {one[label]:.4f} ms = {ms / one[label]:.2f}x")
    return ["### multi-token decode against one token", ""] + out + [""] if out else []


if __name__ == "__main__":
    print(table(json.loads(open(sys.argv[1]).read())))
