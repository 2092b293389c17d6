"""Per-page index data (8-bit index keys per physical page, beside SGLang's KV pool) through
SGLang's real prefix cache: requests admitted, matched, locked, allocated and released the way
the scheduler does it (UnifiedRadixCache, the paged allocator, sglang.test.mem_cache_utils).

* a request whose prefix hits the cache reuses those pages' data: nothing is rewritten there
  (the writes are counted), and its outputs equal a cold run of the same request;
* after eviction, pages reused by another request hold that request's data, nothing stale."""

import pytest
import torch

from tests.sglang.conftest import import_kit

K = import_kit()

from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402

from msa_sgl import radix_integration as ri  # noqa: E402
from msa_sgl.ops.quant import quantize_e4m3_reference  # noqa: E402

SHAPE = K.M3Tiny(num_pages=40)
DATA = K.TokenData(SHAPE, seed=21)
B = SHAPE.block
LAYERS = tuple(SHAPE.msa_layers)  # 1, 3


def _tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, SHAPE.vocab, (n,), generator=g).tolist()


PREFIX = _tokens(3 * B + 5, 1)  # three whole pages and a partial one
A_TOKENS = PREFIX + _tokens(7, 2)
B_TOKENS = PREFIX + _tokens(19, 3)  # shares the three whole pages with A (the partial one is A's)


class Bench:
    """Runner + msa_sgl backend + per-page store + SGLang's radix cache, pages handed out in a
    shuffled order (a fragmented allocator)."""

    def __init__(self, seed=0):
        self.runner = K.M3MockModelRunner(SHAPE)
        alloc = self.runner.token_to_kv_pool_allocator
        g = torch.Generator().manual_seed(seed)
        alloc.free_pages = alloc.free_pages[torch.randperm(alloc.free_pages.numel(), generator=g).to(alloc.device)]
        self.store = ri.attach_page_data(self.runner.token_to_kv_pool, LAYERS)
        self.store.trace = []
        self.hybrid = K.build_backend(self.runner)
        self.cache = K.make_radix_cache(self.runner)
        self.layers = K.make_layers(SHAPE)

    def close(self):
        self.runner.close()

    def forward(self, mode, req, n_new):
        fb = K.forward_batch(self.runner, mode, [req], [n_new], [req.slots[len(req.slots) - n_new:]])
        self.hybrid.init_forward_metadata(fb)
        return {lid: K.run_layer(self.hybrid, self.layers[lid], fb, K.layer_inputs(DATA, lid, [req], [n_new]))[1]
                for lid in LAYERS}

    def prefill(self, tokens, rid):
        req = K.admit(self.runner, self.cache, tokens, rid)
        return req, self.forward(ForwardMode.EXTEND, req, len(tokens) - req.prefix)

    def decode(self, req, token):
        """One generated token: a slot from the real allocator's alloc_decode, a DECODE batch."""
        n = len(req.slots)
        alloc = self.runner.token_to_kv_pool_allocator
        dev = self.runner.device
        loc = alloc.alloc_decode(seq_lens=torch.tensor([n + 1], device=dev), seq_lens_cpu=torch.tensor([n + 1]),
                                 last_loc=torch.tensor([req.slots[-1]], device=dev))
        req.tokens.append(token)
        req.slots.append(int(loc[0]))
        self.runner.req_to_token_pool.req_to_token[req.row, n] = int(loc[0])
        req.sgl.kv.kv_committed_len = req.sgl.kv.kv_allocated_len = n + 1
        return self.forward(ForwardMode.DECODE, req, 1)

    def written(self):
        """(layer -> slots written) since the last call."""
        out = {}
        for lid, slots in self.store.trace:
            out.setdefault(lid, []).extend(slots.tolist())
        self.store.trace.clear()
        return out


def _pages(slots):
    return {s // B for s in slots}


def _expect_page_data_of(store, pool, layer, slots):
    """The store's rows at ``slots`` are the 8-bit form of the pool's index keys there
    (bitwise: msa_sgl's torch statement of the rule, checked against the kernel in
    tests/unit/test_quantize.py)."""
    slots = torch.tensor(slots)
    keys = pool.get_index_k_buffer(layer).cpu()[slots, 0].float()
    k8, scale = quantize_e4m3_reference(keys)
    i = store.index_of(layer)
    flat_k8 = store.k8[i].cpu().view(-1, SHAPE.index_dim)[slots]
    flat_scale = store.scale[i].cpu().view(-1)[slots]
    assert torch.equal(flat_scale, scale), "per-token scales differ from amax|k| / 448"
    assert torch.equal(flat_k8.view(torch.uint8), k8.view(torch.uint8)), "8-bit keys differ"
    deq = flat_k8.float() * flat_scale[:, None]
    assert (deq - keys).abs().le(keys.abs() / 16 + flat_scale[:, None] / 2**9 + 1e-12).all()


@pytest.fixture
def debug_allocator(monkeypatch):
    """SGLang's allocator debug checks (no page freed twice, page-aligned extends)."""
    monkeypatch.setenv("SGLANG_DEBUG_MEMORY_POOL", "1")


def test_prefix_hit_reuses_page_data(msa_on, debug_allocator):
    bench = Bench(seed=1)
    try:
        a, _ = bench.prefill(A_TOKENS, "A")
        assert a.prefix == 0
        written = bench.written()
        assert {lid: sorted(s) for lid, s in written.items()} == {lid: sorted(a.slots) for lid in LAYERS}
        K.finish(bench.cache, a)
        pool = bench.runner.token_to_kv_pool
        shared = a.slots[: 3 * B]
        snap = {lid: (bench.store.k8[i][sorted(_pages(shared))].clone(), bench.store.scale[i][sorted(_pages(shared))].clone())
                for i, lid in enumerate(LAYERS)}

        b, out_b = bench.prefill(B_TOKENS, "B")
        assert b.prefix == 3 * B and b.slots[: 3 * B] == shared  # whole pages hit, the partial one did not
        written = bench.written()
        for lid in LAYERS:
            assert sorted(written[lid]) == sorted(b.slots[3 * B:])  # only the new tokens' slots
            assert not _pages(written[lid]) & _pages(shared)  # no prefix page rewritten
            i = bench.store.index_of(lid)
            pages = sorted(_pages(shared))
            assert torch.equal(bench.store.k8[i][pages].view(torch.uint8), snap[lid][0].view(torch.uint8))
            assert torch.equal(bench.store.scale[i][pages], snap[lid][1])
            _expect_page_data_of(bench.store, pool, lid, b.slots)

        # one decode step touches one page of B's
        out_dec = bench.decode(b, 5)
        written = bench.written()
        assert all(len(written[lid]) == 1 and written[lid][0] == b.slots[-1] for lid in LAYERS)
        for lid in LAYERS:
            _expect_page_data_of(bench.store, pool, lid, b.slots)
    finally:
        bench.close()
    for lid in LAYERS:
        K.check_against_reference(out_b[lid], DATA, lid, [b], [len(B_TOKENS) - 3 * B], seq_lens=[len(B_TOKENS)])
        K.check_against_reference(out_dec[lid], DATA, lid, [b], [1])

    # a cold run of request B (empty cache, other pages) computes the same outputs
    cold = Bench(seed=2)
    try:
        c, out_cold = cold.prefill(B_TOKENS, "B-cold")
        assert c.prefix == 0
    finally:
        cold.close()
    for lid in LAYERS:
        K.expect_close(out_b[lid], out_cold[lid][3 * B:], SHAPE.dtype, f"layer {lid}: warm vs cold")


def test_eviction_and_page_reuse_leave_no_stale_data(msa_on, debug_allocator):
    bench = Bench(seed=3)
    try:
        a, _ = bench.prefill(A_TOKENS, "A")
        K.finish(bench.cache, a)
        b, _ = bench.prefill(B_TOKENS, "B")
        K.finish(bench.cache, b)
        old_pages = _pages(a.slots) | _pages(b.slots)
        old = {lid: bench.store.k8[bench.store.index_of(lid)].clone() for lid in LAYERS}
        alloc = bench.runner.token_to_kv_pool_allocator
        assert K.evict_all(bench.cache) == 4 * B  # A's three shared pages and B's fourth whole page
        assert alloc.available_size() == SHAPE.num_pages * B
        assert K.cached_prefix_len(bench.cache, A_TOKENS) == 0  # evicted
        bench.written()

        c, out_c = bench.prefill(_tokens(5 * B - 3, 9), "C")
        reused = _pages(c.slots) & old_pages
        assert reused, "the allocator handed out none of the freed pages"
        written = bench.written()
        pool = bench.runner.token_to_kv_pool
        for lid in LAYERS:
            assert sorted(written[lid]) == sorted(c.slots)
            _expect_page_data_of(bench.store, pool, lid, c.slots)
            i = bench.store.index_of(lid)
            # the reused pages' rows changed where C's tokens live (the old owner's data is gone)
            live = torch.tensor([s for s in c.slots if s // B in reused])
            assert not torch.equal(bench.store.k8[i].view(-1, SHAPE.index_dim)[live].view(torch.uint8),
                                   old[lid].view(-1, SHAPE.index_dim)[live].view(torch.uint8))
    finally:
        bench.close()
    for lid in LAYERS:
        K.check_against_reference(out_c[lid], DATA, lid, [c], [len(c.tokens)])


def test_quantizer_layout_and_hand_over():
    """The store's writer is msa_sgl.quantize_index_keys: per-token scale amax|k| / 448, keys
    e4m3(k * 448 / amax|k|), written only at the given slots; move() copies rows."""
    g = torch.Generator().manual_seed(0)
    dev = K.KIT_DEVICE
    keys = torch.randn(6, 1, 32, generator=g).half().to(dev)
    keys[2] = 0  # an all-zero key: scale 0, zeros
    store = ri.PageIndexStore.allocate([1], num_pages=3, page_size=4, index_dim=32, device=dev)
    slots = torch.tensor([4, 5, 6, 7, 9, 0], device=dev)
    store.write(1, keys, slots)
    flat = store.dequantized(1).view(-1, 32)[slots]
    amax = keys[:, 0].float().abs().amax(1)
    # tensor / tensor: IEEE division, like the kernel (CUDA's tensor / scalar multiplies by 1/448)
    assert torch.equal(store.scale[0].view(-1)[slots], amax / torch.full_like(amax, 448))
    assert torch.equal(flat[2], torch.zeros(32, device=dev))
    assert (flat - keys[:, 0].float()).abs().le(keys[:, 0].float().abs() / 16 + amax[:, None] / 448 / 2**9).all()
    untouched = torch.ones(12, dtype=torch.bool, device=dev)
    untouched[slots] = False
    assert torch.count_nonzero(store.scale[0].view(-1)[untouched]) == 0
    with pytest.raises(ValueError, match="k_idx: expected"):
        store.write(1, keys[:5], slots)
    store.move(torch.tensor([10, 11], device=dev), torch.tensor([4, 5], device=dev))
    assert torch.equal(store.dequantized(1).view(-1, 32)[[10, 11]], flat[:2])
