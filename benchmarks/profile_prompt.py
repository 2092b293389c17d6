"""Where a whole prompt's time goes: one request of N tokens prefilled in 16K chunks (the suite's
``prompt`` groups, issue 3's 128K target), each chunk one msa_attention call, the prefix cached.

    OUT=dir python benchmarks/profile_prompt.py [N]        # N = 131072 by default

Times the prompt with CUDA events (median of 5 rounds, each round every chunk then a sync, as the
suite's test_prompt_msa), then profiles one round with torch.profiler and reports, from the
kernels' own start and end times:
* the GPU's busy time (the union of kernel intervals) against the round's span: the idle gaps
  (host launch latency, stream waits) the suite's wall time includes;
* the kernels grouped by name, total ms over the prompt and per chunk;
* each chunk's span (its first kernel's start to its last kernel's end).
Writes $OUT/profile_prompt.json.
"""

import json
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402

CHUNK = 16384


def _union(intervals):
    total, end = 0.0, -math.inf
    for s, e in sorted(intervals):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def main():
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 131072
    prob = hb.make_big_problem([CHUNK], [N], dtype=torch.bfloat16, seed=N + 7)
    args = [prob.prompt_chunk(P, CHUNK).msa_args() for P in range(0, N, CHUNK)]

    def round_():
        for i, a in enumerate(args):
            with record_function(f"chunk{i}"):
                msa_sgl.msa_attention(**a)

    for _ in range(2):
        round_()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        round_()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
        round_()
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "trace.json")
        prof.export_chrome_trace(path)
        trace = json.load(open(path))
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    chunks = sorted((e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("chunk")),
                    key=lambda e: e["ts"])
    iv = [(k["ts"], k["ts"] + k["dur"]) for k in kernels]
    span = max(e for _, e in iv) - min(s for s, _ in iv)
    busy = _union(iv)
    by_name = {}
    for k in kernels:
        n = k["name"][:90]
        t = by_name.setdefault(n, [0.0, 0])
        t[0] += k["dur"] / 1e3
        t[1] += 1
    # a chunk's kernels: those whose launch (correlation to the CPU op) falls inside its host range
    launches = {e["args"].get("correlation"): e for e in events if e.get("cat") == "cuda_runtime"
                or e.get("cat") == "cuda_driver"}
    per_chunk = []
    for c in chunks:
        ks = [k for k in kernels if (lk := launches.get(k["args"].get("correlation"))) is not None
              and c["ts"] <= lk["ts"] <= c["ts"] + c["dur"]]
        if ks:
            s, e = min(k["ts"] for k in ks), max(k["ts"] + k["dur"] for k in ks)
            per_chunk.append(dict(chunk=c["name"], kernels=len(ks), span_ms=(e - s) / 1e3,
                                  busy_ms=_union([(k["ts"], k["ts"] + k["dur"]) for k in ks]) / 1e3,
                                  host_ms=c["dur"] / 1e3))
    res = dict(N=N, C=CHUNK, gpu=torch.cuda.get_device_name(), torch=torch.__version__,
               triton=__import__("triton").__version__, event_ms=times, event_ms_median=sorted(times)[2],
               profiled_span_ms=span / 1e3, profiled_busy_ms=busy / 1e3,
               kernels={n: dict(ms=t, count=c) for n, (t, c) in sorted(by_name.items(), key=lambda x: -x[1][0])},
               chunks=per_chunk)
    print(f"N={N}: event ms {[round(t, 2) for t in times]}; profiled span {span / 1e3:.2f} ms, "
          f"GPU busy {busy / 1e3:.2f} ms (idle {100 * (1 - busy / span):.1f}%)")
    for n, (t, c) in sorted(by_name.items(), key=lambda x: -x[1][0]):
        print(f"  {t:8.3f} ms {c:4d}x  {n}")
    for c in per_chunk:
        print("  ", c)
    (Path(os.environ.get("OUT", ".")) / "profile_prompt.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
