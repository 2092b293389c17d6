"""PNG plots and a markdown table from the JSON of a gpu_run.py run (needs matplotlib).

    python benchmarks/plot_results.py RESULTS_DIR

Reads every ``*.json`` of RESULTS_DIR written by gpu_run.py and writes ``prefill_vs_context.png``
(time of one 16K chunk and speedup over SGLang's built-in kernels against the cached context),
``tflops_vs_context.png`` (useful TFLOP/s of the index and main branches) and
``decode_vs_context.png`` (decode step time of msa_sgl, dense SDPA and SGLang) there.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(results_dir: Path) -> dict:
    merged = {"env": {}, "prefill": [], "decode": [], "peer": [], "dense": []}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        merged["env"] = data.get("env") or merged["env"]
        for key in ("prefill", "decode", "peer", "dense"):
            merged[key] += data.get(key, [])
    return merged


def main():
    out = Path(sys.argv[1])
    r = load(out)
    card = f"{r['env'].get('card', '?')}, torch {r['env'].get('torch', '?')}, triton {r['env'].get('triton', '?')}"
    ctx = lambda p: (p["P"] + p["C"]) / 1024  # noqa: E731

    peer = sorted((p for p in r["peer"] if p["kind"] == "prefill"), key=ctx)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot([ctx(p) for p in peer], [p["msa_total_ms"] for p in peer], "o-", label="msa_sgl")
    a1.plot([ctx(p) for p in peer], [p["sglang_total_ms"] for p in peer], "s-", label="SGLang 0.5.23 built-in")
    a1.set(xlabel="context after the chunk (K tokens)", ylabel="ms per 16K chunk", xscale="log", yscale="log",
           title="prefill: one 16K chunk, index + main branch")
    a1.legend()
    a2.plot([ctx(p) for p in peer], [p["speedup"] for p in peer], "o-")
    a2.axhline(2.0, ls="--", c="gray", label="2x target")
    a2.set(xlabel="context after the chunk (K tokens)", ylabel="speedup over SGLang", xscale="log",
           title="msa_sgl vs SGLang built-in", ylim=(0, None))
    a2.legend()
    fig.suptitle(card, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "prefill_vs_context.png", dpi=110)

    pf = sorted((p for p in r["prefill"] if not p.get("tag")), key=ctx)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([ctx(p) for p in pf], [p["index_tflops"] for p in pf], "o-", label="index branch")
    ax.plot([ctx(p) for p in pf], [p["attn_tflops"] for p in pf], "s-", label="main branch")
    ax.axhline(400, ls="--", c="gray", label="400 TF/s target")
    ax.set(xlabel="context after the chunk (K tokens)", ylabel="useful TFLOP/s", xscale="log",
           title=f"16K prefill chunk, M3 shapes, bf16\n{card}", ylim=(0, None))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "tflops_vs_context.png", dpi=110)

    dec = [d for d in r["decode"] if d["q_len"] == 1]
    fig, ax = plt.subplots(figsize=(6, 4))
    for batch, marker in ((1, "o"), (8, "s"), (64, "^")):
        rows = sorted((d for d in dec if d["batch"] == batch), key=lambda d: d["ctx"])
        if not rows:
            continue
        xs = [d["ctx"] / 1024 for d in rows]
        ax.plot(xs, [d["msa_ms"] for d in rows], marker + "-", label=f"msa_sgl b={batch}")
        ax.plot(xs, [min(v for k, v in d["dense"].items() if not k.endswith("_error")) for d in rows],
                marker + ":", label=f"dense SDPA b={batch}")
    sg = [p for p in r["peer"] if p["kind"] == "decode"]
    for p in sg:
        ax.plot([p["ctx"] / 1024], [p["sglang_ms"]], "kx")
    ax.plot([], [], "kx", label="SGLang built-in")
    ax.set(xlabel="context (K tokens)", ylabel="ms per decode step (graph replay)", xscale="log", yscale="log",
           title=f"decode, one token per request\n{card}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "decode_vs_context.png", dpi=110)
    print("wrote", *(p.name for p in out.glob("*.png")))


if __name__ == "__main__":
    main()
