"""PNG plots of a pytest-benchmark JSON from benchmarks/test_bench_kernels.py (needs matplotlib).

    python benchmarks/bench_plots.py bench.json [OUT_DIR]   # OUT_DIR: the JSON's folder

Writes, from the same medians bench_table.py tabulates (ms per step of each entry):
* ``prefill_vs_context.png``: one 16K chunk against the context after it - ms of msa_sgl
  (msa_attention, and MSAPrefillWrapper.run and 8-bit index keys where measured), SGLang's
  built-in kernels and dense SDPA (the fastest backend at each point); msa_sgl's speedup over
  SGLang (2x target) and over dense;
* ``tflops_vs_context.png``: useful TFLOP/s of each branch, msa_sgl and SGLang (400 target);
* ``decode_vs_context.png``: one decode step (graph replays) against the context, per batch -
  msa_sgl with bf16 and 8-bit index keys, SGLang, dense (the fastest backend); speedup over
  dense (7x / 12x targets at 1M). Multi-token decode points are left to bench_table;
* ``prompt_vs_length.png`` (where the JSON has whole prompts): ms of a whole prompt in 16K chunks
  (msa_sgl, SGLang, dense measured and scaled by N^2 as bench_table.py does) and msa_sgl's speedup
  (12x / 20x dense, 2x SGLang targets).
The card, driver and versions (the JSON's machine_info) title each figure.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_table  # noqa: E402


def series(bench: dict) -> dict:
    """``{"prefill": {label: {context: ms}}, "decode": {batch: {label: {context: ms}}}}`` with
    labels as bench_table's (dense entries without their backend), ``"rate"``: ``{label:
    {context: TFLOP/s}}`` of the prefill entries, and ``"prompt"``: ``{label: {N: ms}}`` of the
    whole prompts."""
    out: dict = {"prefill": {}, "decode": {}, "rate": {}, "prompt": {}}
    for b in bench["benchmarks"]:
        info = b.get("extra_info", {})
        ms = bench_table.step_ms(b)[0]
        label = bench_table._label(b["name"])
        if "P" in info:
            ctx = info["P"] + info["C"]
            out["prefill"].setdefault(label, {})[ctx] = ms
            if "flops" in info:
                out["rate"].setdefault(label, {})[ctx] = info["flops"] / ms / 1e9
        elif "N" in info:
            out["prompt"].setdefault(label, {})[info["N"]] = ms
        elif "batch" in info and info.get("q_len", 1) == 1:  # one token a request (bench_table lists MTP)
            out["decode"].setdefault(info["batch"], {}).setdefault(label, {})[info["ctx"]] = ms
    return out


def _xy(points: dict, scale=1.0):
    xs = sorted(points)
    return [x / 1024 for x in xs], [points[x] * scale for x in xs]


def _fastest(entries: dict, prefix: str) -> dict:
    """{context: the lowest ms of the entries whose label starts with ``prefix``} (the dense
    baseline: the faster of cuDNN and the flash backend at each point)."""
    out: dict = {}
    for label, points in entries.items():
        if label.startswith(prefix):
            for c, ms in points.items():
                out[c] = min(ms, out.get(c, ms))
    return out


def _ratio(num: dict, den: dict) -> dict:
    return {c: num[c] / den[c] for c in num if c in den}


def _save(plt, fig, out: Path, name: str) -> str:
    """Lays out, writes and closes one figure; its file name."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def plot(bench: dict, out: Path) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mi = bench.get("machine_info", {})
    card = ", ".join(f"{k} {mi[k]}" for k in ("gpu", "driver", "torch", "triton") if k in mi) or "unknown machine"
    s = series(bench)
    written = []

    pf = s["prefill"]
    msa_entries = [k for k in ("prefill_msa", "prefill_msa_wrapper", "prefill_msa_fp8") if k in pf]
    dense = _fastest(pf, "prefill_dense")
    if msa_entries:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        for label, style in (("prefill_msa", "o-"), ("prefill_msa_wrapper", "o--"), ("prefill_msa_fp8", "o-."),
                             ("prefill_sglang all", "s-")):
            if label in pf:
                a1.plot(*_xy(pf[label]), style, label=label)
        if dense:
            a1.plot(*_xy(dense), "^:", label="prefill_dense (fastest)")
        a1.set(xlabel="context after the chunk (K tokens)", ylabel="ms per chunk", xscale="log", yscale="log",
               title="prefill: one chunk, index + main branch")
        a1.legend(fontsize=7)
        for label in msa_entries:
            for peer, points, style in (("prefill_sglang all", pf.get("prefill_sglang all"), "o-"),
                                        ("dense", dense, "^:")):
                if points:
                    a2.plot(*_xy(_ratio(points, pf[label])), style, label=f"{label} over {peer}")
        a2.axhline(2.0, ls="--", c="gray", label="2x SGLang target")
        a2.set(xlabel="context after the chunk (K tokens)", ylabel="speedup", xscale="log", yscale="log",
               title="msa_sgl's speedup")
        a2.legend(fontsize=7)
        fig.suptitle(card, fontsize=8)
        written.append(_save(plt, fig, out, "prefill_vs_context.png"))

    rate = {k: v for k, v in s["rate"].items() if not k.startswith("prefill_dense")}
    if rate:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for label, points in rate.items():
            ax.plot(*_xy(points), "o-" if label.startswith("prefill_msa") else "s:", label=label)
        ax.axhline(400, ls="--", c="gray", label="400 TF/s target (each branch)")
        ax.set(xlabel="context after the chunk (K tokens)", ylabel="useful TFLOP/s", xscale="log", ylim=(0, None),
               title=f"prefill chunk, useful TFLOP/s\n{card}")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=6)
        written.append(_save(plt, fig, out, "tflops_vs_context.png"))

    dec = s["decode"]
    if dec:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        markers = "os^vD"
        for i, (batch, entries) in enumerate(sorted(dec.items())):
            m = markers[i % len(markers)]
            dense = _fastest(entries, "decode_dense")
            for label, points, style in (("decode_msa bf16", entries.get("decode_msa bf16"), "-"),
                                         ("decode_msa fp8", entries.get("decode_msa fp8"), "--"),
                                         ("decode_sglang", entries.get("decode_sglang"), ":"),
                                         ("decode_dense (fastest)", dense, "-.")):
                if points:
                    a1.plot(*_xy(points, 1e3), m + style, label=f"{label} b={batch}")
            for label, style in (("decode_msa bf16", "-"), ("decode_msa fp8", "--")):
                if label in entries and dense:
                    a2.plot(*_xy(_ratio(dense, entries[label])), m + style, label=f"{label} b={batch}")
        a1.set(xlabel="context (K tokens)", ylabel="us per decode step (graph replay)", xscale="log", yscale="log",
               title="decode, one token per request")
        a1.legend(fontsize=5, ncol=3, loc="lower right")
        a2.axhline(7, ls="--", c="gray", label="7x (bf16 keys, 1M)")
        a2.axhline(12, ls=":", c="gray", label="12x (8-bit keys, 1M)")
        a2.set(xlabel="context (K tokens)", ylabel="speedup over dense", xscale="log", title="msa_sgl over dense SDPA")
        a2.legend(fontsize=6)
        fig.suptitle(card, fontsize=8)
        written.append(_save(plt, fig, out, "decode_vs_context.png"))
    pr = s["prompt"]
    if "prompt_msa" in pr:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        dense = pr.get("prompt_dense", {})
        est = {n: ms for n, (ms, measured) in bench_table.prompt_dense(dense, pr["prompt_msa"]).items()
               if not measured}
        for label, points, style in (("prompt_msa", pr["prompt_msa"], "o-"),
                                     ("prompt_sglang", pr.get("prompt_sglang"), "s-"),
                                     ("prompt_dense (measured)", dense, "^:"),
                                     ("prompt_dense (N^2 estimate)", est, "^--")):
            if points:
                a1.plot(*_xy(points), style, label=label)
        a1.set(xlabel="prompt (K tokens), 16K chunks", ylabel="ms per prompt", xscale="log", yscale="log",
               title="whole prompt: index + main branch, every chunk")
        a1.legend(fontsize=7)
        for label, points, style in (("over dense (N^2 estimate past the measured)", {**dense, **est}, "^:"),
                                     ("over SGLang", pr.get("prompt_sglang"), "s-")):
            if points:
                a2.plot(*_xy(_ratio(points, pr["prompt_msa"])), style, label=f"msa_sgl {label}")
        a2.axhline(12, ls="--", c="gray", label="12x dense (128K)")
        a2.axhline(20, ls=":", c="gray", label="20x dense (1M)")
        a2.axhline(2, ls="-.", c="gray", label="2x SGLang")
        a2.set(xlabel="prompt (K tokens), 16K chunks", ylabel="speedup", xscale="log", yscale="log",
               title="msa_sgl's speedup")
        a2.legend(fontsize=7)
        fig.suptitle(card, fontsize=8)
        written.append(_save(plt, fig, out, "prompt_vs_length.png"))
    return written


if __name__ == "__main__":
    path = Path(sys.argv[1])
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else path.parent
    target.mkdir(parents=True, exist_ok=True)
    print("wrote", *plot(json.loads(path.read_text()), target))
