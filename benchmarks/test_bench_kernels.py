"""pytest-benchmark suite: msa_sgl beside its peers, same inputs, one process.

    python -m pytest benchmarks/test_bench_kernels.py --benchmark-enable \\
        --benchmark-json=$OUT/bench.json -p no:cacheprovider
    python benchmarks/bench_table.py $OUT/bench.json > $OUT/bench.md

Each benchmark group is one point, holding msa_sgl and every peer that runs there:

* ``prefill C=16384 P=...``: a 16K-token chunk after P = 0 / 112K / 1008K cached tokens (M3
  shapes, bf16): ``msa_attention`` (index + top-k + main branch, the call SGLang's backend makes),
  as ``MSAPrefillWrapper.run``, its index branch and its main branch alone, and the whole call and
  the index branch with the 8-bit index-key cache (``_fp8``: fp8 tensor-core products); SGLang
  0.5.23's built-in MiniMax kernels as its backend calls them (benchmarks/peer_sglang.py), index +
  attention and each alone; dense causal attention of the chunk over its whole context,
  bottom-right aligned, by cuDNN SDPA and by torch's flash backend (FlashAttention-2) (P <= 112K:
  at 1008K the K/V repeated to 64 heads does not fit). Timed two ways (_timed): by CUDA events
  with the host's launches queued ahead of the GPU (the table's time: the GPU's time for the
  call, as gpu_run.py's do_bench and a serving engine's queue of layers see it), and by wall
  clock, a call then a synchronisation (the table's wall column: the time a caller that starts
  from an idle GPU and waits sees, host launch time included where it outruns the GPU's work,
  NOTES.md v21, v28c).
* ``prompt N=... C=16384``: one request of N = 128K / 256K / 1M tokens prefilled in 16K chunks,
  the prefix cached (issue 3's whole-prompt targets): the chunks' msa_attention calls in order,
  SGLang's the same way, dense cuDNN over the whole prompt in one call up to 256K (bench_table.py
  estimates 1M from 256K by N^2). A round is every chunk (then a synchronisation for the wall
  column).
* ``decode b=... ctx=...[ q=...]``: batch {1, 8, 64} x context {32K, 128K, 1M} where memory
  allows, one query token per request, and MTP (8 tokens a request) at 1 x 128K:
  ``MSADecodeWrapper.run`` with bf16 and with 8-bit index keys, SGLang's decode path, dense SDPA
  decode by cuDNN (GQA) and by the flash backend (a group's heads as query rows; one token only);
  each round replays a CUDA graph of ``steps`` steps over rotated copies of the inputs (L2 does
  not flatter anyone), at least ~2 ms of work, so the synchronisation after it is noise.

``extra_info`` of each benchmark: ``steps`` (per round), ``flops`` (useful, per step: indexer
``2 Hkv d_idx`` a visible key, main branch ``4 Hq D`` an attended key) or ``bytes`` (compulsory,
per step), for SGLang the fraction of rows whose selection equals msa_sgl's (up to order), for
the 8-bit prefill entries the fraction equal to the bf16 keys' selection.
bench_table.py turns the JSON into a table of time per step, TFLOP/s or GB/s, and each entry's
time over msa_sgl's in its group.

Without a GPU (Triton's interpreter) the same code runs at toy sizes, eagerly, without peers:
the plumbing only. Not part of the test command (tests/ only); numbers are recorded, never
asserted.
"""

import math
import os
import statistics

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import msa_sgl  # noqa: E402
from harness import bench as hb  # noqa: E402
from msa_sgl import ops  # noqa: E402

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
SHAPES = hb.M3 if GPU else dict(num_q_heads=8, num_kv_heads=2, head_dim=32, index_dim=32, block_size=16, topk=4)
DTYPE = torch.bfloat16 if GPU else torch.float16
CHUNK = 16384 if GPU else 48
PREFIXES = (0, 114688, 1032192) if GPU else (0, 96)
DENSE_PREFILL_MAX = 131072  # dense chunk beyond this context: its K/V at 64 heads does not fit
PROMPTS = (131072, 262144, 1048576) if GPU else (96,)  # whole prompts in CHUNK-token chunks
DENSE_PROMPT_MAX = 262144  # dense over a longer prompt: estimated by N^2 (the issue allows it)
# decode (batch, context, query tokens a request): batch {1, 8, 64} x {32K, 128K, 1M} where the K/V
# fit twice (the paged problem and dense's contiguous copy; 64 x 1M is 137 GB once), and MTP
# (q_len 8) at 1 x 128K beside its q_len 1 point
DECODE_POINTS = ([(b, c, 1) for b in (1, 8, 64) for c in (32768, 131072, 1048576)] + [(1, 131072, 8)] if GPU
                 else [(2, 200, 1), (2, 200, 3)])
ROTATE_BYTES = 200e6  # decode inputs are copied until a round's rotation touches this many bytes
MAX_COPIES = 24  # (1 x 32K with 8-bit keys: 8.5 MB a step)
ROUND_MS = 2.0  # a decode round replays at least this much work

HQ, HKV, D, DI = SHAPES["num_q_heads"], SHAPES["num_kv_heads"], SHAPES["head_dim"], SHAPES["index_dim"]
B = SHAPES["block_size"]


def _sync():
    if GPU:
        torch.cuda.synchronize()


def _timed(benchmark, fn, rounds, steps=1):
    """``fn`` once to compile and warm up, then ``rounds`` timed rounds of one call each, by wall
    clock (pytest-benchmark's stats: a call, then a synchronisation) and, on a GPU, by CUDA events
    with the host ahead (_event_rounds; bench_table.py's main column)."""
    benchmark.extra_info["steps"] = steps

    def run():
        fn()
        _sync()

    run()
    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=1)
    if GPU:
        _event_rounds(benchmark, fn, rounds)


LEAD_MATMULS = 6  # bf16 8192^3 products queued ahead of an event round: ~10 ms on an H100 / H200
_lead_buffers = []


def _lead():
    """~10 ms of tensor-core work (bf16 matmuls of random values) queued ahead of a timed round:
    the host issues the round's launches while it runs, and the round meets the GPU at the clock
    and power of sustained load. (A sleep kernel there instead rests the card: v28d measured
    compute-bound calls up to 10% faster after a 10 ms sleep than back to back, NOTES.md v28e.)"""
    if not _lead_buffers:
        a = torch.randn(8192, 8192, device=DEVICE, dtype=torch.bfloat16)
        _lead_buffers.extend((a, torch.empty_like(a)))
    a, c = _lead_buffers
    for _ in range(LEAD_MATMULS):
        torch.mm(a, a, out=c)


def _event_rounds(benchmark, fn, rounds):
    """``rounds`` calls of ``fn``, each timed by CUDA events recorded around it while the GPU runs
    ~10 ms of matmuls issued first (_lead), so the call's launches are queued before its first
    kernel starts: the GPU's time for the call, kernels and the gaps between them, without the
    host's launch time - as a serving engine's queue of layers hides it (one layer's launches
    take ~1.7 ms of host time against 3.8-6.5 ms of GPU work at a 16K chunk, NOTES.md v28c). The
    issue's method (medians of CUDA-event timings). extra_info: ``event_ms`` (a round's time) and
    ``host_ahead`` (rounds whose launches were all issued before the lead ended; a long prompt's
    are not, but its first chunks' GPU work keeps the host ahead from there on)."""
    times, ahead = lead_event_rounds(fn, rounds)
    benchmark.extra_info["event_ms"] = times
    benchmark.extra_info["host_ahead"] = ahead


def lead_event_rounds(fn, rounds):
    """(ms of each round, rounds whose launches were all issued before the lead ended): ``fn()``
    timed by CUDA events behind _lead, ``rounds`` in a row (see _event_rounds)."""
    times, ahead = [], 0
    for _ in range(rounds):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        _lead()
        e0.record()
        fn()
        e1.record()
        ahead += not e0.query()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    return times, ahead


def capture_graph(fn):
    """A CUDA graph of ``fn()``, captured on a side stream (as torch asks) that joins the current one."""
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.cuda.graph(g):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    return g


def lead_median_ms(fn, rounds, keep):
    """Median event time (ms) of ``fn()`` behind _lead over the last ``keep`` of ``rounds`` rounds
    in a row (the first ones bring the card to its sustained-load clock)."""
    times, _ = lead_event_rounds(fn, rounds)
    return statistics.median(times[-keep:])


def graph_lead_ms(fn, rounds, keep):
    """lead_median_ms of one replay of ``fn``'s CUDA graph: the A/B scripts' column beside their
    back-to-back replays."""
    return lead_median_ms(capture_graph(fn).replay, rounds, keep)


def _graph_round(step_fns):
    """(round, steps): on a GPU ``round`` replays one CUDA graph running every function of
    ``step_fns`` in order, repeated until a round takes at least ROUND_MS; on a CPU it calls
    them once each."""
    for f in step_fns:
        f()
    _sync()
    if not GPU:
        return (lambda: [f() for f in step_fns]), len(step_fns)

    def capture(reps):
        return capture_graph(lambda: [f() for _ in range(reps) for f in step_fns])

    one = capture(1)
    one.replay()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(10):
        one.replay()
    e1.record()
    e1.synchronize()
    reps = max(1, math.ceil(ROUND_MS / (e0.elapsed_time(e1) / 10)))
    g = capture(reps)
    return g.replay, reps * len(step_fns)


@pytest.fixture(scope="session")
def peer():
    """SGLang 0.5.23's MiniMax kernels, or a skip naming why they are not importable."""
    if not GPU:
        pytest.skip("SGLang's MiniMax kernels are timed on the GPU only")
    import peer_sglang as ps

    sg, err = ps.load()
    if sg is None:
        pytest.skip(f"sglang not importable: {err}")
    return sg


def _same_rows(topk_sg, topk) -> float:
    """Fraction of (query, group) rows whose selected blocks equal msa_sgl's, as sets."""
    import peer_sglang as ps

    return _same_sets(ps.as_msa_topk(topk_sg), topk)


def _same_sets(a, b) -> float:
    """Fraction of rows of two msa_sgl selections [total_q, Hkv, topk] equal as sets."""
    return (a.sort(-1).values == b.sort(-1).values).all(-1).float().mean().item()


# ----------------------------------------------------------------------------------------------
# prefill: one 16K chunk after P cached tokens
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=PREFIXES, ids=lambda p: f"P{p}")
def chunk(request):
    P = request.param
    prob = hb.make_big_problem([CHUNK], [P + CHUNK], dtype=DTYPE, device=DEVICE, seed=P + 1, **SHAPES)
    topk = ops.index_topk(**prob.index_args())
    attended = hb.attended_keys(topk, prob.args["cu_seqlens_q"], prob.args["seq_lens_k"], B)
    flops = dict(index=hb.index_flops([CHUNK], [P + CHUNK], HKV, DI), main=hb.main_flops(attended, HQ // HKV, D))
    return P, prob, topk, flops


def _prefill(benchmark, P, flops, rounds=20 if GPU else 1):
    benchmark.group = f"prefill C={CHUNK} P={P}"
    benchmark.extra_info.update(P=P, C=CHUNK, flops=flops)
    return rounds


def test_prefill_msa(benchmark, chunk):
    P, prob, _, f = chunk
    _timed(benchmark, lambda: msa_sgl.msa_attention(**prob.msa_args()), _prefill(benchmark, P, f["index"] + f["main"]))


def test_prefill_msa_wrapper(benchmark, chunk):
    """msa_attention as the SGLang backend runs it: MSAPrefillWrapper planned once (as once per
    batch), run() timed (as once per layer)."""
    P, prob, _, f = chunk
    a = prob.msa_args()
    w = msa_sgl.MSAPrefillWrapper(a["config"], num_q_heads=HQ, num_kv_heads=HKV, head_dim=D, index_dim=DI,
                                  dtype=DTYPE, device=DEVICE)
    w.plan(a["page_table"], a["cu_seqlens_q"], a["seq_lens_k"], a["q"].shape[0])
    _timed(benchmark, lambda: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"]),
           _prefill(benchmark, P, f["index"] + f["main"]))


def test_prefill_msa_index(benchmark, chunk):
    P, prob, _, f = chunk
    _timed(benchmark, lambda: ops.index_topk(**prob.index_args()), _prefill(benchmark, P, f["index"]))


@pytest.fixture(scope="module")
def chunk_fp8(chunk):
    """The chunk's index keys in the 8-bit cache (msa_sgl.quantize_index_keys): (msa_attention
    arguments, index_topk arguments, fraction of (query, group) rows selecting the same blocks as
    with the bf16 keys)."""
    _, prob, topk, _ = chunk
    k8, scale = hb.quantized_index_keys(prob)
    idx = prob.index_args() | dict(k_idx_cache=k8, k_idx_scale=scale)
    return prob.msa_args() | dict(k_idx_cache=k8, k_idx_scale=scale), idx, _same_sets(ops.index_topk(**idx), topk)


def test_prefill_msa_fp8(benchmark, chunk, chunk_fp8):
    """msa_attention with the 8-bit index-key cache: the indexer's products on fp8 tensor cores."""
    P, _, _, f = chunk
    args, _, same = chunk_fp8
    rounds = _prefill(benchmark, P, f["index"] + f["main"])
    benchmark.extra_info["same_selection_rows_as_bf16"] = same
    _timed(benchmark, lambda: msa_sgl.msa_attention(**args), rounds)


def test_prefill_msa_index_fp8(benchmark, chunk, chunk_fp8):
    P, _, _, f = chunk
    _, idx, same = chunk_fp8
    rounds = _prefill(benchmark, P, f["index"])
    benchmark.extra_info["same_selection_rows_as_bf16"] = same
    _timed(benchmark, lambda: ops.index_topk(**idx), rounds)


def test_prefill_msa_main(benchmark, chunk):
    """The main branch as msa_attention runs it (rows that select every block by the contract on
    the dense kernel where that pays)."""
    P, prob, topk, f = chunk
    q, kc = prob.args["q"], prob.args["k_cache"]
    dense = ops.main_branch.dense_rows_pay(q.shape[0], len(prob.q_lens), q.shape[1], kc.shape[2], prob.config)
    _timed(benchmark, lambda: ops.sparse_attention(**prob.attention_args(topk), dense_rows=dense),
           _prefill(benchmark, P, f["main"]))


@pytest.fixture(scope="module")
def sglang_chunk(chunk, peer):
    import peer_sglang as ps

    P, prob, topk, f = chunk
    call = ps.SGLangCall(peer, prob)
    topk_sg = call.prefill_indexer()
    return call, topk_sg, _same_rows(topk_sg, topk)


@pytest.mark.parametrize("part", ["all", "index", "attn"])
def test_prefill_sglang(benchmark, chunk, sglang_chunk, part):
    P, _, _, f = chunk
    call, topk_sg, same = sglang_chunk
    fn, flops = dict(all=(lambda: call.prefill_attn(call.prefill_indexer()), f["index"] + f["main"]),
                     index=(call.prefill_indexer, f["index"]),
                     attn=(lambda: call.prefill_attn(topk_sg), f["main"]))[part]
    rounds = _prefill(benchmark, P, flops)
    benchmark.extra_info["same_selection_rows"] = same
    _timed(benchmark, fn, rounds)


def _dense_chunk(q, L):
    """Dense causal attention of the chunk's queries ``q`` [C, Hq, D] over ``L`` keys (random,
    contiguous), bottom-right aligned: (backend name, call). C == L: cuDNN SDPA (GQA). C < L on a
    GPU: cuDNN in two calls merged by their log-sum-exps (the prefix non-causal, the chunk's own
    keys causal; cuDNN's causal mask is top-left aligned, right for the square part only), K/V
    repeated to Hq heads, checked once against FlashAttention-2's bottom-right mask; that one
    call (FA2, K/V repeated: ~half cuDNN's rate) where cuDNN is unavailable."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    C = q.shape[0]
    q4 = q.transpose(0, 1)[None]
    k4 = torch.randn(1, HKV, L, D, device=DEVICE, dtype=DTYPE)
    v4 = torch.randn_like(k4)
    if C == L:
        def sdpa():
            with sdpa_kernel([SDPBackend.CUDNN_ATTENTION] if GPU else [SDPBackend.MATH]):
                return torch.nn.functional.scaled_dot_product_attention(q4, k4, v4, is_causal=True, enable_gqa=True)
        return ("cudnn" if GPU else "math"), sdpa
    kx, vx = k4.repeat_interleave(HQ // HKV, 1), v4.repeat_interleave(HQ // HKV, 1)
    if GPU:
        def flash2():  # FlashAttention-2's causal mask is bottom-right aligned where C < L
            return torch.ops.aten._scaled_dot_product_flash_attention(q4, kx, vx, 0.0, True, False)[0]

        def cudnn_split():
            return _cudnn_prefix_chunk(q4, kx, vx, L - C)

        try:
            got = cudnn_split()
        except RuntimeError as err:  # no cuDNN attention in this torch / for these shapes
            return f"flash2 K/V repeated (cuDNN: {str(err).splitlines()[0][:80]})", flash2
        want = flash2()  # the check's own failure is the run's: never a silent fallback
        err = ((got.float() - want.float()).norm() / want.float().norm()).item()
        assert err < 1e-2, f"cuDNN prefix + chunk merge differs from FlashAttention-2: relative L2 {err:.2e}"
        return "cudnn prefix + causal chunk, LSE merge", cudnn_split
    from torch.nn.attention.bias import causal_lower_right

    mask = causal_lower_right(C, L)
    return "math", lambda: torch.nn.functional.scaled_dot_product_attention(q4, kx, vx, attn_mask=mask)


def _cudnn_prefix_chunk(q4, kx, vx, P):
    """Bottom-right causal attention of q4 [1, H, C, D] over kx / vx [1, H, P + C, D]: the P
    prefix keys without a mask and the C chunk keys with a causal one, each by cuDNN with its
    log-sum-exp, merged: o = (o_a e^(l_a - m) + o_b e^(l_b - m)) / (e^(l_a - m) + e^(l_b - m)).
    The merge's elementwise ops are timed with it (~1 ms of the 108.7 at P = 112K by the count of
    NOTES.md v22, not timed apart): the dense side pays them, a fused kernel would not."""
    cudnn = torch.ops.aten._scaled_dot_product_cudnn_attention
    o_a, l_a = cudnn(q4, kx[:, :, :P], vx[:, :, :P], None, True, 0.0, False, False)[:2]
    o_b, l_b = cudnn(q4, kx[:, :, P:], vx[:, :, P:], None, True, 0.0, True, False)[:2]
    l_a, l_b = l_a.reshape(o_a.shape[:-1]), l_b.reshape(o_b.shape[:-1])
    m = torch.maximum(l_a, l_b)
    w_a, w_b = torch.exp(l_a - m)[..., None], torch.exp(l_b - m)[..., None]
    return ((o_a.float() * w_a + o_b.float() * w_b) / (w_a + w_b)).to(q4.dtype)


def _flash_chunk(q, L):
    """torch's flash backend (FlashAttention-2, ``aten._scaled_dot_product_flash_attention``) on
    the chunk's queries ``q`` [C, Hq, D] over ``L`` random keys: its causal mask is bottom-right
    aligned, right for C < L too, in one call. (backend name, call): K/V as Hkv heads where this
    torch's FA2 takes GQA (checked once against K/V repeated to Hq heads), else repeated (named)."""
    flash = torch.ops.aten._scaled_dot_product_flash_attention
    q4 = q.transpose(0, 1)[None]
    k4 = torch.randn(1, HKV, L, D, device=DEVICE, dtype=DTYPE)
    v4 = torch.randn_like(k4)
    kx, vx = k4.repeat_interleave(HQ // HKV, 1), v4.repeat_interleave(HQ // HKV, 1)
    want = flash(q4, kx, vx, 0.0, True, False)[0]
    try:
        got = flash(q4, k4, v4, 0.0, True, False)[0]
    except RuntimeError as err:  # this torch's FA2 wants equal head counts
        return f"flash2 K/V repeated (GQA: {str(err).splitlines()[0][:60]})", lambda: flash(q4, kx, vx, 0.0, True, False)
    err = ((got.float() - want.float()).norm() / want.float().norm()).item()
    assert err < 1e-3, f"FA2 with {HKV} K/V heads differs from K/V repeated to {HQ}: relative L2 {err:.2e}"
    return "flash2 GQA", lambda: flash(q4, k4, v4, 0.0, True, False)


def test_prefill_dense(benchmark, chunk):
    P, prob, _, _ = chunk
    L = P + CHUNK
    if L > DENSE_PREFILL_MAX:
        pytest.skip(f"dense chunk over {L} keys: its K/V at {HQ} heads does not fit beside the problem")
    name, fn = _dense_chunk(prob.args["q"], L)
    rounds = _prefill(benchmark, P, 4 * HQ * D * hb.visible_keys([CHUNK], [L]), rounds=10 if GPU else 1)
    benchmark.extra_info["backend"] = name
    _timed(benchmark, fn, rounds)


def test_prefill_dense_flash(benchmark, chunk):
    """Dense causal attention of the chunk by torch's flash backend (FlashAttention-2), one call."""
    if not GPU:
        pytest.skip("torch's flash backend runs on a GPU only")
    P, prob, _, _ = chunk
    L = P + CHUNK
    if L > DENSE_PREFILL_MAX:
        pytest.skip(f"dense chunk over {L} keys: not timed past {DENSE_PREFILL_MAX}, like cuDNN's (FA2's one-time "
                    f"GQA check holds K/V repeated to {HQ} heads)")
    name, fn = _flash_chunk(prob.args["q"], L)
    rounds = _prefill(benchmark, P, 4 * HQ * D * hb.visible_keys([CHUNK], [L]), rounds=10)
    benchmark.extra_info["backend"] = name
    _timed(benchmark, fn, rounds)


# ----------------------------------------------------------------------------------------------
# whole prompts: one request prefilled in 16K chunks, the prefix cached (issue 3's targets)
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=PROMPTS, ids=lambda n: f"N{n}")
def prompt(request):
    """(N, chunk problems in order, useful FLOPs of all chunks): one N-token cache, 16K chunks."""
    N = request.param
    prob = hb.make_big_problem([CHUNK], [N], dtype=DTYPE, device=DEVICE, seed=N + 7, **SHAPES)
    chunks = [prob.prompt_chunk(P, CHUNK) for P in range(0, N, CHUNK)]
    flops = 0.0
    for c in chunks:
        topk = ops.index_topk(**c.index_args())
        a = c.args
        flops += hb.index_flops(c.q_lens, c.seq_lens, HKV, DI)
        flops += hb.main_flops(hb.attended_keys(topk, a["cu_seqlens_q"], a["seq_lens_k"], B), HQ // HKV, D)
    return N, chunks, flops


def _prompt(benchmark, N, flops, rounds=3 if GPU else 1):
    benchmark.group = f"prompt N={N} C={CHUNK}"
    benchmark.extra_info.update(N=N, C=CHUNK, flops=flops)
    return rounds


def test_prompt_msa(benchmark, prompt):
    """The prompt's chunks in order, each one msa_attention call (as the SGLang backend's extends)."""
    N, chunks, flops = prompt
    args = [c.msa_args() for c in chunks]
    _timed(benchmark, lambda: [msa_sgl.msa_attention(**a) for a in args], _prompt(benchmark, N, flops))


def test_prompt_sglang(benchmark, prompt, peer):
    import peer_sglang as ps

    N, chunks, flops = prompt
    calls = [ps.SGLangCall(peer, c) for c in chunks]
    _timed(benchmark, lambda: [c.prefill_attn(c.prefill_indexer()) for c in calls], _prompt(benchmark, N, flops))


def test_prompt_dense(benchmark, prompt):
    """Dense causal attention over the whole prompt in one call (cuDNN SDPA, GQA): the issue's
    baseline; above DENSE_PROMPT_MAX bench_table.py scales the largest measured one by N^2."""
    N, _, _ = prompt
    if N > DENSE_PROMPT_MAX:
        pytest.skip(f"dense prompt of {N} tokens: estimated from {DENSE_PROMPT_MAX} by N^2 (bench_table.py)")
    name, fn = _dense_chunk(torch.randn(N, HQ, D, device=DEVICE, dtype=DTYPE), N)
    rounds = _prompt(benchmark, N, 4 * HQ * D * hb.visible_keys([N], [N]))
    benchmark.extra_info["backend"] = name
    _timed(benchmark, fn, rounds)


# ----------------------------------------------------------------------------------------------
# decode: 1 (or 8, MTP) query tokens per request, CUDA-graph replays over rotated inputs
# ----------------------------------------------------------------------------------------------
def _point_id(p):
    batch, ctx, q_len = p
    return f"b{batch}_ctx{ctx}" + (f"_q{q_len}" if q_len > 1 else "")


@pytest.fixture(scope="module", params=DECODE_POINTS, ids=_point_id)
def step(request):
    batch, ctx, q_len = request.param
    kv = batch * ctx * HKV * D * 2 * 2
    if GPU:
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(0).total_memory
        if 2 * kv > 0.85 * total:
            pytest.skip(f"decode b={batch} ctx={ctx}: K/V {kv / 1e9:.0f} GB, paged and dense's contiguous copy "
                        f"do not fit in {total / 1e9:.0f} GB")
    need = sum(hb.decode_bytes(batch, ctx, q_len, fp8_keys=True, **SHAPES)[:2])  # the smallest variant's
    copies = max(1, min(MAX_COPIES, math.ceil(ROTATE_BYTES / need))) if GPU else 1
    probs = [hb.make_big_problem([q_len] * batch, [ctx] * batch, dtype=DTYPE, device=DEVICE,
                                 seed=batch + ctx + q_len + i, **SHAPES) for i in range(copies)]
    return batch, ctx, q_len, probs


def _decode(benchmark, batch, ctx, q_len, nbytes):
    benchmark.group = f"decode b={batch} ctx={ctx}" + (f" q={q_len}" if q_len > 1 else "")
    benchmark.extra_info.update(batch=batch, ctx=ctx, q_len=q_len, bytes=nbytes)
    return 50 if GPU else 1


@pytest.mark.parametrize("keys", ["bf16", "fp8"])
def test_decode_msa(benchmark, step, keys):
    batch, ctx, q_len, probs = step
    fns = []
    for p in probs:
        a, w = p.args, hb.planned_decode_wrapper(p, q_len, index_fp8=keys == "fp8")
        if keys == "fp8":
            k8, scale = hb.quantized_index_keys(p)
            fns.append(lambda a=a, w=w, k8=k8, s=scale: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], k8,
                                                              k_idx_scale=s))
        else:
            fns.append(lambda a=a, w=w: w.run(a["q"], a["k_cache"], a["v_cache"], a["q_idx"], a["k_idx_cache"]))
    rounds = _decode(benchmark, batch, ctx, q_len,
                     sum(hb.decode_bytes(batch, ctx, q_len, fp8_keys=keys == "fp8", **SHAPES)))
    fn, steps = _graph_round(fns)
    _timed(benchmark, fn, rounds, steps)


def test_decode_sglang(benchmark, step, peer):
    import peer_sglang as ps

    batch, ctx, q_len, probs = step
    if q_len > 1:
        pytest.skip("SGLang's MiniMax decode kernels take one query token per request")
    calls = [ps.SGLangCall(peer, p) for p in probs]
    _, topk_sg = calls[0].decode()
    rounds = _decode(benchmark, batch, ctx, q_len, sum(hb.decode_bytes(batch, ctx, **SHAPES)))
    benchmark.extra_info["same_selection_rows"] = _same_rows(topk_sg, ops.index_topk(**probs[0].index_args()))
    fn, steps = _graph_round([c.decode for c in calls])
    _timed(benchmark, fn, rounds, steps)


def _dense_decode_inputs(batch, ctx):
    """Rotated copies of (q [batch, Hq, 1, D], K and V [batch, Hkv, ctx, D]) (contiguous) and the
    step's bytes (K/V, q and the output)."""
    kv = batch * HKV * ctx * D * 2 * 2
    copies = max(1, min(MAX_COPIES, math.ceil(ROTATE_BYTES / kv))) if GPU else 1
    ins = []
    for _ in range(copies):
        k4 = torch.randn(batch, HKV, ctx, D, device=DEVICE, dtype=DTYPE)
        ins.append((torch.randn(batch, HQ, 1, D, device=DEVICE, dtype=DTYPE), k4, torch.randn_like(k4)))
    return ins, kv + batch * HQ * D * 2 * 2


def test_decode_dense(benchmark, step):
    """Dense decode over contiguous K/V of the same length (cuDNN SDPA, GQA; SDPA's math on a CPU)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    batch, ctx, q_len, _ = step
    if q_len > 1:
        pytest.skip("dense decode is timed for one query token a request (the issue's points)")
    ins, nbytes = _dense_decode_inputs(batch, ctx)

    def sdpa(q4, k4, v4):
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION] if GPU else [SDPBackend.MATH]):
            return torch.nn.functional.scaled_dot_product_attention(q4, k4, v4, enable_gqa=True)

    rounds = _decode(benchmark, batch, ctx, q_len, nbytes)
    benchmark.extra_info["backend"] = "cudnn" if GPU else "math"
    fn, steps = _graph_round([lambda t=t: sdpa(*t) for t in ins])
    _timed(benchmark, fn, rounds, steps)


def test_decode_dense_flash(benchmark, step):
    """Dense decode by torch's flash backend (FlashAttention-2) over the same contiguous K/V: one
    token's Hq heads as the G query rows of each of the Hkv heads (q [batch, Hkv, G, D], no mask -
    exact for one token), so K/V are read once, as GQA reads them."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if not GPU:
        pytest.skip("torch's flash backend runs on a GPU only")
    batch, ctx, q_len, _ = step
    if q_len > 1:
        pytest.skip("dense decode is timed for one query token a request (the issue's points)")
    ins, nbytes = _dense_decode_inputs(batch, ctx)
    G = HQ // HKV

    def sdpa(q4, k4, v4):
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            return torch.nn.functional.scaled_dot_product_attention(q4.view(batch, HKV, G, D), k4, v4)

    q4, k4, v4 = ins[0]
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        want = torch.nn.functional.scaled_dot_product_attention(q4, k4, v4, enable_gqa=True)
    err = ((sdpa(q4, k4, v4).view_as(want).float() - want.float()).norm() / want.float().norm()).item()
    assert err < 1e-2, f"flash decode (heads as rows) differs from cuDNN GQA: relative L2 {err:.2e}"
    rounds = _decode(benchmark, batch, ctx, q_len, nbytes)
    benchmark.extra_info["backend"] = "flash2, a group's heads as query rows"
    fn, steps = _graph_round([lambda t=t: sdpa(*t) for t in ins])
    _timed(benchmark, fn, rounds, steps)
