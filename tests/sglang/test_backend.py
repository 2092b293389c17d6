"""MiniMax-M3-shaped layers through SGLang's MiniMax hybrid backend with msa_sgl installed:
real ForwardBatch objects in EXTEND (with cached prefixes), MIXED, DECODE and TARGET_VERIFY on
the kit's shuffled and interleaved page layouts, against msa_sgl's float64 reference."""

import pytest
import torch

from tests.sglang.conftest import import_kit

K = import_kit()

from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402

import msa_sgl  # noqa: E402

SHAPE = K.M3Tiny()
DATA = K.TokenData(SHAPE, seed=3)


def _tokens(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, K.M3Tiny.vocab, (n,), generator=g).tolist()


# (mode, sequence lengths, new tokens per request, draft tokens)
CASES = {
    "extend_cached_prefix": (ForwardMode.EXTEND, (70, 45, 33), (30, 45, 9), 0),
    "mixed_extend_and_decode": (ForwardMode.MIXED, (52, 67), (20, 1), 0),
    "decode": (ForwardMode.DECODE, (70, 33, 17, 96), (1, 1, 1, 1), 0),
    "target_verify_chain": (ForwardMode.TARGET_VERIFY, (41, 66), (3, 3), 3),
}


# other MSA settings SGLang's config can carry (sequences long enough that blocks are dropped)
OTHER_SHAPES = {
    # 16 query heads over 2 KV heads (G = 8), D = d_idx = 64, block 32, top-2
    "g8_d64_block32_top2": K.M3Tiny(num_heads=16, head_dim=64, index_dim=64, block=32, topk=2),
    # a forced first block and two local blocks (sparse_init_block 1, sparse_local_block 2)
    "init1_local2_top4": K.M3Tiny(topk=4, init_blocks=1, local_blocks=2),
}


@pytest.mark.parametrize("layout", ["shuffled_pages", "interleaved_pages"])
@pytest.mark.parametrize("case", list(CASES))
def test_sparse_layer_matches_reference(msa_on, case, layout):
    _check_case(SHAPE, DATA, case, layout)


@pytest.mark.parametrize("case", ["extend_cached_prefix", "decode"])
@pytest.mark.parametrize("shape", list(OTHER_SHAPES))
def test_other_msa_settings(msa_on, shape, case):
    shape = OTHER_SHAPES[shape]
    _check_case(shape, K.TokenData(shape, seed=4), case, "shuffled_pages")


def _check_case(shape, data, case, layout):
    mode, seq_lens, new_lens, ndt = CASES[case]
    runner = K.M3MockModelRunner(shape, num_draft_tokens=ndt)
    try:
        hybrid = K.build_backend(runner)
        sparse = hybrid.sparse
        reqs = [K.Req(tokens=_tokens(n, 10 * i + len(case)), row=i + 1) for i, n in enumerate(seq_lens)]
        K.prepare(runner, data, reqs, new_lens, layout, seed=len(case))
        fb = K.step_batch(runner, mode, reqs, new_lens)
        hybrid.init_forward_metadata(fb)
        lid = 3 if layout == "shuffled_pages" else 1  # both msa_sgl layers, across the cases
        inputs = K.layer_inputs(data, lid, reqs, new_lens)
        idx_o, out = K.run_layer(hybrid, K.make_layers(shape)[lid], fb, inputs)
    finally:
        runner.close()
    kind = {ForwardMode.DECODE: "decode", ForwardMode.TARGET_VERIFY: "verify"}.get(mode, "extend")
    if kind == "extend":  # the batch's MSAPrefillWrapper, planned at its first layer
        assert sparse.msa_sgl_stats == {"msa_extend": 1, "prefill_plan": 1}, sparse.msa_sgl_stats
        assert sparse._msa_wrapper is None
        (w,) = sparse._msa_step.prefill.values()
        assert isinstance(w, msa_sgl.MSAPrefillWrapper)
        assert (w.hq, w.hkv, w.head_dim, w.index_dim, w.dtype) == (shape.num_heads, shape.num_kv_heads,
                                                                   shape.head_dim, shape.index_dim, shape.dtype)
    else:  # decode / verify: the backend's MSADecodeWrapper, planned for the batch, run for the layer
        assert sparse.msa_sgl_stats == {f"msa_{kind}": 1, f"wrapper_plan_{kind}": 1, f"wrapper_{kind}": 1}, \
            sparse.msa_sgl_stats
        w = sparse._msa_wrapper
        assert isinstance(w, msa_sgl.MSADecodeWrapper)
        assert (w.max_batch, w.max_q_len, w.max_pages) == (shape.max_reqs, max(1, ndt), sparse._msa_graph_pages)
        assert (w.hq, w.hkv, w.head_dim, w.index_dim, w.dtype) == (shape.num_heads, shape.num_kv_heads,
                                                                   shape.head_dim, shape.index_dim, shape.dtype)
    assert idx_o is None and out.shape == (sum(new_lens), shape.num_heads * shape.head_dim)
    # this call's K/V and index keys landed at out_cache_loc, through the pool's setter
    pool = runner.token_to_kv_pool
    loc = fb.out_cache_loc
    assert torch.equal(pool.get_key_buffer(lid)[loc], inputs["k"])
    assert torch.equal(pool.get_value_buffer(lid)[loc], inputs["v"])
    assert torch.equal(pool.get_index_k_buffer(lid)[loc], inputs["idx_k"])
    report = K.check_against_reference(out, data, lid, reqs, new_lens)
    assert report.rel_l2 <= report.bound.rel_l2


def test_dp_padded_extend_rows_are_zero(msa_on):
    """Under DP attention SGLang pads q past the batch's tokens (extend_seq_lens_cpu sums to
    fewer rows): msa_sgl computes the real rows and returns zeros for the padding, like
    SGLang's backend."""
    runner = K.M3MockModelRunner(SHAPE)
    try:
        hybrid = K.build_backend(runner)
        reqs = [K.Req(tokens=_tokens(40, 1), row=2), K.Req(tokens=_tokens(23, 2), row=4)]
        new_lens = [17, 23]
        K.place(runner, reqs, "shuffled_pages", seed=5)
        K.write_prefix(runner, DATA, SHAPE.sparse_layers, reqs, [23, 0])
        pad = 5
        fb = K.forward_batch(runner, ForwardMode.EXTEND, reqs, new_lens,
                             [r.slots[len(r.slots) - n:] for r, n in zip(reqs, new_lens)] + [[0] * pad])
        hybrid.init_forward_metadata(fb)
        inputs = K.layer_inputs(DATA, 1, reqs, new_lens)
        padded = {k: (None if v is None else torch.cat([v, v[:pad] * 0])) for k, v in inputs.items()}
        _, out = hybrid.sparse.forward(padded["q"], padded["k"], padded["v"], K.make_layers(SHAPE)[1], fb,
                                       idx_q=padded["idx_q"], idx_k=padded["idx_k"], idx_v=None)
    finally:
        runner.close()
    assert out.shape[0] == sum(new_lens) + pad
    assert torch.count_nonzero(out[sum(new_lens):]) == 0
    K.check_against_reference(out[: sum(new_lens)], DATA, 1, reqs, new_lens)


def test_bad_input_raises_instead_of_falling_back(msa_on):
    runner = K.M3MockModelRunner(SHAPE)
    try:
        hybrid = K.build_backend(runner)
        reqs = [K.Req(tokens=_tokens(20, 7), row=1)]
        K.place(runner, reqs, "shuffled_pages")
        fb = K.forward_batch(runner, ForwardMode.DECODE, reqs, [1], [reqs[0].slots[-1:]])
        hybrid.init_forward_metadata(fb)
        layer = K.make_layers(SHAPE)[1]
        inputs = K.layer_inputs(DATA, 1, reqs, [1])
        two_rows = {k: torch.cat([v, v]) for k, v in inputs.items() if v is not None}
        with pytest.raises(ValueError, match="q: expected 1 rows for a decode batch"):
            hybrid.sparse.forward(two_rows["q"], two_rows["k"], two_rows["v"], layer, fb, idx_q=two_rows["idx_q"],
                                  idx_k=two_rows["idx_k"], idx_v=None)
        layer.k_scale_float = 0.5
        with pytest.raises(ValueError, match="layer.k_scale_float"):
            K.run_layer(hybrid, layer, fb, inputs)
    finally:
        runner.close()


def test_prefill_workspace_env_reaches_msa_attention(msa_on, monkeypatch):
    """MSA_SGL_PREFILL_WORKSPACE_MB becomes the extend wrapper's (msa_attention's) workspace_bytes
    (the output stays the reference's); a value that is not a positive int raises at start-up.
    The batch's second sparse layer runs on the wrapper planned at its first (one plan), with
    msa_attention's outputs bitwise."""
    monkeypatch.setenv(msa_on.ENV_PREFILL_WORKSPACE, "3")
    runner = K.M3MockModelRunner(SHAPE)
    try:
        hybrid = K.build_backend(runner)
        sparse = hybrid.sparse
        assert sparse.msa_sgl_plan.workspace_bytes == 3 << 20
        reqs = [K.Req(tokens=_tokens(40, 1), row=2), K.Req(tokens=_tokens(23, 2), row=4)]
        new_lens = [17, 23]
        K.place(runner, reqs, "shuffled_pages", seed=5)
        K.write_prefix(runner, DATA, SHAPE.sparse_layers, reqs, [23, 0])
        fb = K.forward_batch(runner, ForwardMode.EXTEND, reqs, new_lens,
                             [r.slots[len(r.slots) - n:] for r, n in zip(reqs, new_lens)])
        hybrid.init_forward_metadata(fb)
        layers = K.make_layers(SHAPE)
        outs = {lid: K.run_layer(hybrid, layers[lid], fb, K.layer_inputs(DATA, lid, reqs, new_lens))[1]
                for lid in (1, 3)}  # msa_sgl's layers
        meta = sparse._msa_step
        (w,) = meta.prefill.values()  # both layers: one shape, one plan
        direct = {}
        for lid in outs:
            k_buf, v_buf = sparse.kv_pool.get_kv_buffer(lid)
            idx_buf = sparse.kv_pool.get_index_k_buffer(lid)
            B = sparse.block_size_k
            inputs = K.layer_inputs(DATA, lid, reqs, new_lens)
            direct[lid] = msa_sgl.msa_attention(
                inputs["q"].view(-1, SHAPE.num_heads, SHAPE.head_dim), msa_sgl.paged_view(k_buf, B),
                msa_sgl.paged_view(v_buf, B), inputs["idx_q"].view(-1, SHAPE.num_kv_heads, SHAPE.index_dim),
                msa_sgl.paged_view(idx_buf.view(idx_buf.shape[0], -1), B), meta.page_table, meta.cu_seqlens_q,
                meta.seq_lens_k, sparse.msa_sgl_plan.config, workspace_bytes=3 << 20)
    finally:
        runner.close()
    assert w.workspace_bytes == 3 << 20
    assert sparse.msa_sgl_stats == {"msa_extend": 2, "prefill_plan": 1}, sparse.msa_sgl_stats
    for lid, out in outs.items():
        assert torch.equal(out, direct[lid].reshape(out.shape)), f"layer {lid}: wrapper != msa_attention"
        K.check_against_reference(out, DATA, lid, reqs, new_lens)
    for bad in ("0", "-2", "1.5", "lots"):
        monkeypatch.setenv(msa_on.ENV_PREFILL_WORKSPACE, bad)
        runner = K.M3MockModelRunner(SHAPE)
        try:
            with pytest.raises(ValueError, match="MSA_SGL_PREFILL_WORKSPACE_MB"):
                K.build_backend(runner)
        finally:
            runner.close()


# MiniMax-M3's own dimensions (Hq 64, Hkv 4, D = d_idx = 128, block 128, top-16, local 1), with
# requests of 17-24 blocks so that blocks are dropped: GPU only (SGLang's kernels, and the size)
M3_DIMS = dict(num_heads=64, num_kv_heads=4, head_dim=128, index_dim=128, block=128, topk=16, context_len=3200,
               max_reqs=4, num_pages=80)
M3_CASES = {
    "extend_cached_prefix": (ForwardMode.EXTEND, (3000, 2200), (300, 128), 0),
    "decode": (ForwardMode.DECODE, (3000, 2500, 2177), (1, 1, 1), 0),
}
_M3 = {}


def _m3_shape_and_data():
    if not _M3:
        _M3["shape"] = K.M3Tiny(**M3_DIMS)
        _M3["data"] = K.TokenData(_M3["shape"], seed=5)
    return _M3["shape"], _M3["data"]


@pytest.mark.skipif(not K.ON_GPU, reason="SGLang's own MiniMax kernels need a GPU (their autotuner)")
@pytest.mark.parametrize("dims", ["tiny", "m3"])
@pytest.mark.parametrize("case", ["extend_cached_prefix", "decode"])
def test_matches_sglang_backend(msa_on, case, dims):
    """GPU: msa_sgl's backend and SGLang's own MiniMax backend on identical inputs (the pool
    written by each through the same setter): both within the dtype's bound of the float64
    reference, and within twice that bound of each other; at the kit's small shape and at
    MiniMax-M3's own dimensions."""
    import sglang.srt.layers.attention.minimax_sparse_backend as msb

    from msa_sgl import radix_integration as ri

    if dims == "m3":
        shape, data = _m3_shape_and_data()
        mode, seq_lens, new_lens, _ = M3_CASES[case]
    else:
        shape, data = SHAPE, DATA
        mode, seq_lens, new_lens, _ = CASES[case]
    outs = {}
    for which in ("msa_sgl", "sglang"):
        runner = K.M3MockModelRunner(shape)
        try:
            if which == "sglang":
                stock = ri._stock_base(msb.MiniMaxSparseAttnBackend)
                dense = K.ATTENTION_BACKENDS["torch_native"](runner)
                sparse = stock(runner)
                hybrid = msb.MiniMaxHybridAttnBackend(dense, sparse, sparse.sparse_layer_ids)
            else:
                hybrid = K.build_backend(runner)
            reqs = [K.Req(tokens=_tokens(n, 10 * i + 1), row=i + 1) for i, n in enumerate(seq_lens)]
            K.prepare(runner, data, reqs, new_lens, "shuffled_pages", seed=3)
            fb = K.step_batch(runner, mode, reqs, new_lens)
            hybrid.init_forward_metadata(fb)
            outs[which] = {lid: K.run_layer(hybrid, K.make_layers(shape)[lid], fb,
                                            K.layer_inputs(data, lid, reqs, new_lens))[1] for lid in shape.msa_layers}
        finally:
            runner.close()
    for lid in shape.msa_layers:
        for which in outs:
            K.check_against_reference(outs[which][lid], data, lid, reqs, new_lens)
        from harness.tolerance import BOUNDS

        a, b = outs["msa_sgl"][lid].double().cpu(), outs["sglang"][lid].double().cpu()
        assert float((a - b).norm() / b.norm()) <= 2 * BOUNDS[shape.dtype].rel_l2


@pytest.mark.parametrize("mode", [ForwardMode.DECODE, ForwardMode.TARGET_VERIFY], ids=["decode", "target_verify"])
def test_step_plans_once_and_runs_per_layer(msa_on, mode):
    """Decode / verify: MSADecodeWrapper.plan once per forward batch (the metadata hook), run
    once per layer; every layer returns its own tensor (the next layer does not overwrite it)."""
    ndt, q_per, kind = K.step_shape(mode)
    layers = K.make_layers(SHAPE)
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt)
    try:
        hybrid = K.build_backend(runner)
        sparse = hybrid.sparse
        assert sparse._msa_wrapper is None  # built lazily, by the first step batch
        reqs = [K.Req(tokens=_tokens(n, 40 + i), row=i + 2) for i, n in enumerate((75, 29, 50))]
        K.prepare(runner, DATA, reqs, [q_per] * len(reqs), "interleaved_pages", seed=6)
        outs = []
        for step in range(2):  # two forward batches (the second reuses the wrapper)
            new = [q_per] * len(reqs)
            fb = K.step_batch(runner, mode, reqs, new)
            hybrid.init_forward_metadata(fb)
            w = sparse._msa_wrapper
            assert sparse._msa_step.wrapper is w and sparse.msa_sgl_stats.get(f"wrapper_plan_{kind}") == step + 1
            outs.append({lid: K.run_layer(hybrid, layers[lid], fb, K.layer_inputs(DATA, lid, reqs, new))[1]
                         for lid in SHAPE.msa_layers})
        assert sparse._msa_wrapper is w
    finally:
        runner.close()
    n = len(SHAPE.msa_layers)
    assert sparse.msa_sgl_stats == {f"wrapper_plan_{kind}": 2, f"wrapper_{kind}": 2 * n, f"msa_{kind}": 2 * n}
    for out in outs:
        ptrs = {out[lid].data_ptr() for lid in SHAPE.msa_layers}
        assert len(ptrs) == n and not any(p == w._out.data_ptr() for p in ptrs)
        for lid in SHAPE.msa_layers:  # checked after every layer ran
            K.check_against_reference(out[lid], DATA, lid, reqs, [q_per] * len(reqs))
    for lid in SHAPE.msa_layers:
        torch.testing.assert_close(outs[0][lid], outs[1][lid], rtol=0, atol=0)


def test_start_up_line_names_the_step_path(msa_on, caplog):
    """The start-up line says which step kinds the wrapper serves, and why verify does not
    when the drafts exceed its 16 query tokens per request."""
    import logging

    from msa_sgl import radix_integration as ri

    lines = {}
    for ndt in (4, 17):
        ri._LOGGED.clear()
        caplog.clear()
        runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt)
        try:
            with caplog.at_level(logging.INFO, logger=ri.__name__):
                plan = K.build_backend(runner).sparse.msa_sgl_plan
        finally:
            runner.close()
        msgs = [r.getMessage() for r in caplog.records if r.name == ri.__name__]
        assert len(msgs) == 1
        lines[ndt] = (plan, msgs[0])
    plan, line = lines[4]
    assert plan.wrapper_kinds == ("decode", "verify") and plan.step_q_len == 4 and not plan.direct_step_kinds
    assert "decode and verify through msa_sgl.MSADecodeWrapper" in line and "up to 4 query tokens" in line
    plan, line = lines[17]
    assert plan.wrapper_kinds == ("decode",) and plan.step_q_len == 1 and "verify" in plan.kinds
    assert "decode through msa_sgl.MSADecodeWrapper" in line
    assert "verify through msa_sgl.msa_attention per layer: 17 draft tokens per request > MSADecodeWrapper's 16" in line
