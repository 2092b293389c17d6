"""The decode / verify CUDA-graph hooks of SGLang 0.5.23's AttentionBackend, driven the way the
attention test kit's CUDA-graph runner drives them (``_init_cuda_graph_capture_metadata`` then
``_init_cuda_graph_replay_metadata``): on the CPU this is the metadata path and the forwards,
without a real graph. What a captured graph relies on is asserted directly: the metadata the
kernels read lives in buffers allocated by ``init_cuda_graph_state`` outside any capture (the
MSADecodeWrapper's, or, for a step kind msa_attention serves, the backend's own), the same
at capture and at replay, and ``init_forward_metadata_in_graph`` refreshes them with device
ops only (the wrapper's plan)."""

import pytest
import torch

from tests.sglang.conftest import import_kit

K = import_kit()

from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402
from sglang.test.kits.attention_unittest.runner_modes.cuda_graph_decode_runner import (  # noqa: E402
    _init_cuda_graph_capture_metadata,
    _init_cuda_graph_replay_metadata,
)

SHAPE = K.M3Tiny()
DATA = K.TokenData(SHAPE, seed=11)
CAPTURE_BS = 4
LAYER = 3


def _padding_req(q_per, ndt):
    """A padded graph row: request row 0 (SGLang's padding row, all slot 0), seq_len 1."""
    n = 1 + (q_per if ndt else 0)
    return K.Req(tokens=[0] * n, row=0, slots=[0] * n)


def _batch(runner, mode, reqs, q_per):
    new = [q_per] * len(reqs)
    return K.step_batch(runner, mode, reqs, new), new


def _meta_ptrs(m):
    return (m.page_table.data_ptr(), m.seq_lens_k.data_ptr(), m.cu_seqlens_q.data_ptr())


def _wrapper_ptrs(w):
    """The planned metadata the wrapper's run() reads (its own buffers)."""
    return tuple(b.data_ptr() for b in (w._page_table, w._seq_lens, w._cu_seqlens, w._token_req, w._tile_cum))


# (mode, draft tokens per request, whether MSADecodeWrapper serves it)
GRAPH_CASES = {
    "decode": (ForwardMode.DECODE, 0, True),
    "target_verify": (ForwardMode.TARGET_VERIFY, 3, True),
    # more drafts than the wrapper takes (16 per request): msa_attention, on the backend's buffers
    "target_verify_17_drafts": (ForwardMode.TARGET_VERIFY, 17, False),
}


@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_graph_replay_metadata_matches_eager(msa_on, monkeypatch, case):
    mode, ndt, via_wrapper = GRAPH_CASES[case]
    if not via_wrapper:
        # msa_attention picks its main-branch form from the row count (eager: 3 requests, replay:
        # + 1 padded row), and the forms round differently in bf16: pin one form so that the
        # comparison below can stay bitwise.
        from msa_sgl.ops import main_branch

        monkeypatch.setattr(main_branch, "SPLIT_MAX_QUERIES", 0)
    q_per = ndt if mode == ForwardMode.TARGET_VERIFY else 1
    layer = K.make_layers(SHAPE)[LAYER]
    kind = "verify" if ndt else "decode"

    # eager reference run: 3 requests, no graph state
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt)
    try:
        eager = K.build_backend(runner)
        reqs = [K.Req(tokens=[(7 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18))]
        K.prepare(runner, DATA, reqs, [q_per] * len(reqs), "interleaved_pages", seed=2)
        fb, new = _batch(runner, mode, reqs, q_per)
        eager.init_forward_metadata(fb)
        _, eager_out = K.run_layer(eager, layer, fb, K.layer_inputs(DATA, LAYER, reqs, new))
        assert eager.sparse._msa_cg is None
        # no graphs: the wrapper is built by the first step batch, sized for the running requests
        assert (eager.sparse._msa_wrapper is not None) == via_wrapper
        assert eager.sparse.msa_sgl_stats.get(f"wrapper_{kind}", 0) == int(via_wrapper)
    finally:
        runner.close()

    # graph runner: capture at bs 4 with the fill length, then replay 3 real rows + 1 padded row
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt, cuda_graph=True)
    try:
        hybrid = K.build_backend(runner)
        sparse = hybrid.sparse
        fill = sparse.get_cuda_graph_seq_len_fill_value()
        assert fill == 1
        # SGLang captures with seq_lens = fill value and request row 0 (verify: + the drafts)
        n_cap = fill + (q_per if ndt else 0)
        cap_reqs = [K.Req(tokens=[0] * n_cap, row=0, slots=[0] * n_cap) for _ in range(CAPTURE_BS)]
        cap_fb, cap_new = _batch(runner, mode, cap_reqs, q_per)
        _init_cuda_graph_capture_metadata(sparse, CAPTURE_BS, cap_fb)
        width = -(-runner.req_to_token_pool.req_to_token.shape[1] // SHAPE.block)
        captured = sparse._msa_step
        w = sparse._msa_wrapper
        if via_wrapper:
            # built by init_cuda_graph_state (outside capture), for max(graph bs, running requests)
            assert sparse._msa_cg is None and captured.wrapper is w
            assert (w.max_batch, w.max_pages, w.max_q_len) == (max(CAPTURE_BS, SHAPE.max_reqs), width, q_per)
            ptrs = _wrapper_ptrs(w)
        else:
            assert captured.wrapper is None
            assert w is not None and w.max_q_len == 1  # decode's, not verify's
            cg = sparse._msa_cg
            assert cg["page_table"].shape == (CAPTURE_BS, width)
            assert captured.page_table.data_ptr() == cg["page_table"].data_ptr()
        K.run_layer(hybrid, layer, cap_fb, K.layer_inputs(DATA, LAYER, cap_reqs, cap_new))  # capture-time forward

        reqs = [K.Req(tokens=[(7 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18))]
        K.prepare(runner, DATA, reqs, [q_per] * len(reqs), "interleaved_pages", seed=2)
        pad = _padding_req(q_per, ndt)
        replay_fb, replay_new = _batch(runner, mode, reqs + [pad], q_per)
        _init_cuda_graph_replay_metadata(sparse, CAPTURE_BS, replay_fb)
        step = sparse._msa_step
        # what the captured kernels read: the same buffers, refreshed in place
        if via_wrapper:
            assert step.wrapper is w and sparse._msa_wrapper is w and _wrapper_ptrs(w) == ptrs
            table, lens_k, cu = w._page_table[:CAPTURE_BS], w._seq_lens[:CAPTURE_BS], w._cu_seqlens[: CAPTURE_BS + 1]
        else:
            assert _meta_ptrs(step) == _meta_ptrs(captured)
            table, lens_k, cu = step.page_table, step.seq_lens_k, step.cu_seqlens_q
        lens = [len(r.slots) for r in reqs] + [1 + (q_per if ndt else 0)]
        assert lens_k.tolist() == lens
        assert cu.tolist() == [q_per * i for i in range(CAPTURE_BS + 1)]
        B = SHAPE.block
        for b, r in enumerate(reqs):
            want = [r.slots[i * B] // B for i in range(-(-len(r.slots) // B))]
            assert table[b, : len(want)].tolist() == want
        assert table[3, 0].item() == 0  # the padded row reads the padding page
        inputs = K.layer_inputs(DATA, LAYER, reqs, replay_new[:3])
        pad_inputs = K.layer_inputs(DATA, LAYER, [pad], [q_per])
        both = {k: (None if v is None else torch.cat([v, pad_inputs[k]])) for k, v in inputs.items()}
        _, replay_out = K.run_layer(hybrid, layer, replay_fb, both)
    finally:
        runner.close()
    n_real = 3 * q_per
    torch.testing.assert_close(replay_out[:n_real], eager_out, rtol=0, atol=0)
    K.check_against_reference(replay_out[:n_real], DATA, LAYER, reqs, replay_new[:3])
    if via_wrapper:  # one plan per batch (capture, replay), one run per layer call
        assert sparse.msa_sgl_stats == {f"msa_{kind}": 2, f"wrapper_plan_{kind}": 2, f"wrapper_{kind}": 2}
    else:
        assert sparse.msa_sgl_stats == {f"msa_{kind}": 2}


def test_batch_over_graph_size_gets_its_own_metadata(msa_on):
    """An eager decode batch larger than the captured sizes: the wrapper is sized for the
    running requests too (not only the graphs), and it is planned into the wrapper's buffers."""
    runner = K.M3MockModelRunner(SHAPE, cuda_graph=True)
    try:
        sparse = K.build_backend(runner).sparse
        sparse.init_cuda_graph_state(max_bs=2, max_num_tokens=2)
        w = sparse._msa_wrapper
        assert w.max_batch == SHAPE.max_reqs
        reqs = [K.Req(tokens=list(range(10 + j)), row=j + 1) for j in range(3)]
        K.place(runner, reqs, "shuffled_pages")
        fb, _ = _batch(runner, ForwardMode.DECODE, reqs, 1)
        sparse.init_forward_metadata(fb)
        step = sparse._msa_step
    finally:
        runner.close()
    assert step.wrapper is w and sparse.msa_sgl_stats == {"wrapper_plan_decode": 1}
    assert w._seq_lens[:3].tolist() == [10, 11, 12] and w._cu_seqlens[:4].tolist() == [0, 1, 2, 3]
    assert step.seq_lens_k.tolist() == [10, 11, 12] and step.cu_seqlens_q.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("mode", [ForwardMode.DECODE, ForwardMode.TARGET_VERIFY], ids=["decode", "target_verify"])
def test_batch_over_wrapper_size_runs_msa_attention(msa_on, caplog, mode):
    """A step batch with more requests than the wrapper's max_batch is served by
    msa_sgl.msa_attention (correct, named once in the log), the smaller ones by the wrapper; a
    later init_cuda_graph_state with a larger max_bs rebuilds the wrapper for it."""
    import logging

    from msa_sgl import radix_integration as ri

    ndt, q_per, kind = K.step_shape(mode)
    layers = K.make_layers(SHAPE)
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt)
    try:
        hybrid = K.build_backend(runner)
        sparse = hybrid.sparse
        sparse._msa_max_reqs = 2  # as if the server ran at most 2 requests (the pool has rows for 6)
        reqs = [K.Req(tokens=[(5 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18, 52))]
        K.prepare(runner, DATA, reqs, [q_per] * len(reqs), "shuffled_pages", seed=4)

        def step(batch):
            fb, new = _batch(runner, mode, batch, q_per)
            hybrid.init_forward_metadata(fb)
            return {lid: K.run_layer(hybrid, layers[lid], fb, K.layer_inputs(DATA, lid, batch, new))[1]
                    for lid in SHAPE.msa_layers}, new

        with caplog.at_level(logging.INFO, logger=ri.__name__):
            big, new = step(reqs)  # 4 > max_batch 2
        w = sparse._msa_wrapper
        assert w.max_batch == 2 and sparse._msa_step.wrapper is None
        assert sparse.msa_sgl_stats == {f"msa_{kind}": 2}  # both layers, no wrapper plan or run
        assert any("more than 2 requests" in r.getMessage() and "msa_sgl.msa_attention" in r.getMessage()
                   for r in caplog.records if r.name == ri.__name__)
        for lid in SHAPE.msa_layers:
            K.check_against_reference(big[lid], DATA, lid, reqs, new)

        small, small_new = step(reqs[:2])  # within max_batch: the wrapper
        assert sparse._msa_step.wrapper is w
        assert sparse.msa_sgl_stats == {f"msa_{kind}": 4, f"wrapper_plan_{kind}": 1, f"wrapper_{kind}": 2}
        for lid in SHAPE.msa_layers:
            K.check_against_reference(small[lid], DATA, lid, reqs[:2], small_new)
            K.expect_close(small[lid], big[lid][: 2 * q_per], SHAPE.dtype, f"layer {lid}: wrapper vs msa_attention")

        sparse.init_cuda_graph_state(max_bs=4, max_num_tokens=4 * q_per)  # graphs of 4: rebuilt for them
        assert sparse._msa_wrapper is not w and sparse._msa_wrapper.max_batch == 4
        assert sparse._msa_retired[0][0] is w  # kept alive: a graph captured on it reads its buffers
        again, _ = step(reqs)
        assert sparse._msa_step.wrapper is sparse._msa_wrapper
        assert sparse.msa_sgl_stats[f"wrapper_{kind}"] == 4
        for lid in SHAPE.msa_layers:
            K.expect_close(again[lid], big[lid], SHAPE.dtype, f"layer {lid}: rebuilt wrapper vs msa_attention")
    finally:
        runner.close()


@pytest.mark.skipif(not K.ON_GPU, reason="a real CUDA graph needs a GPU")
@pytest.mark.parametrize("case", list(GRAPH_CASES))
def test_real_cuda_graph_replay(msa_on, monkeypatch, case):
    """GPU: the in-graph metadata step and the layer captured in one torch.cuda.CUDAGraph (what
    SGLang's decode graph runner records), replayed after the static inputs are overwritten with
    another batch: same output as an eager run of that batch."""
    from msa_sgl import radix_integration as ri

    monkeypatch.delenv(ri.ENV_VALIDATE)  # validation reads device values: not capturable
    mode, ndt, via_wrapper = GRAPH_CASES[case]
    q_per = ndt if mode == ForwardMode.TARGET_VERIFY else 1
    layer = K.make_layers(SHAPE)[LAYER]
    runner = K.M3MockModelRunner(SHAPE, num_draft_tokens=ndt, cuda_graph=True)
    try:
        sparse = K.build_backend(runner).sparse
        sparse.init_cuda_graph_state(max_bs=CAPTURE_BS, max_num_tokens=CAPTURE_BS * q_per)
        n_cap = 1 + (q_per if ndt else 0)
        cap_reqs = [K.Req(tokens=[0] * n_cap, row=0, slots=[0] * n_cap) for _ in range(CAPTURE_BS)]
        static_fb, cap_new = _batch(runner, mode, cap_reqs, q_per)
        static_in = K.layer_inputs(DATA, LAYER, cap_reqs, cap_new)

        def step():
            sparse.init_forward_metadata_in_graph(static_fb)
            return sparse.forward(static_in["q"], static_in["k"], static_in["v"], layer, static_fb,
                                  idx_q=static_in["idx_q"], idx_k=static_in["idx_k"], idx_v=None)[1]

        sparse.init_forward_metadata_out_graph(static_fb, in_capture=True)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            step()  # warm-up (Triton compiles outside the capture)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = step()
        assert (sparse._msa_step.wrapper is not None) == via_wrapper

        # a real batch of 4 requests: overwrite the static inputs in place, replay
        reqs = [K.Req(tokens=[(7 * i + j) % SHAPE.vocab for i in range(n)], row=j + 1)
                for j, n in enumerate((70, 37, 18, 129))]
        K.prepare(runner, DATA, reqs, [q_per] * len(reqs), "interleaved_pages", seed=2)
        fb, new = _batch(runner, mode, reqs, q_per)
        for name in ("req_pool_indices", "seq_lens", "out_cache_loc"):
            getattr(static_fb, name).copy_(getattr(fb, name))
        inputs = K.layer_inputs(DATA, LAYER, reqs, new)
        for name in ("q", "k", "v", "idx_q", "idx_k"):
            static_in[name].copy_(inputs[name])
        sparse.init_forward_metadata_out_graph(static_fb)
        graph.replay()
        torch.cuda.synchronize()
        replayed = static_out.clone()

        sparse.init_forward_metadata(fb)  # eager, same batch
        _, eager = K.run_layer(sparse, layer, fb, inputs)

        # an eager step of another size in between (it re-plans the shared wrapper): the graph
        # replays its own captured plan, so the same batch gives the same output again
        fb3, new3 = _batch(runner, mode, reqs[:3], q_per)
        sparse.init_forward_metadata(fb3)
        K.run_layer(sparse, layer, fb3, K.layer_inputs(DATA, LAYER, reqs[:3], new3))
        sparse.init_forward_metadata_out_graph(static_fb)
        graph.replay()
        torch.cuda.synchronize()
        replayed_again = static_out.clone()
    finally:
        runner.close()
    torch.testing.assert_close(replayed, eager, rtol=0, atol=0)
    torch.testing.assert_close(replayed_again, replayed, rtol=0, atol=0)
    K.check_against_reference(replayed, DATA, LAYER, reqs, new)
