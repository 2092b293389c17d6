"""What msa_sgl does not serve goes to SGLang's own MiniMax path (``super()``), with one
start-up log line naming the layers / kinds and the reason.

SGLang's own sparse kernels cannot run on this CPU (their Triton autotuner needs a GPU driver,
even under the interpreter), so its forward methods are replaced by a recorder here: the tests
check that the call reached them with the right layer and mode, not what they compute."""

import dataclasses
import logging

import pytest
import torch

from tests.sglang.conftest import import_kit

K = import_kit()

from sglang.srt.model_executor.forward_batch_info import ForwardMode  # noqa: E402

from msa_sgl import radix_integration as ri  # noqa: E402

SHAPE = K.M3Tiny()
DATA = K.TokenData(SHAPE, seed=5)


@pytest.fixture
def stock_calls(msa_on, monkeypatch):
    """Records every call that reaches SGLang's MiniMaxSparseAttnBackend.forward_extend /
    forward_decode (what super() resolves to) and answers zeros."""
    import sglang.srt.layers.attention.minimax_sparse_backend as msb

    stock = ri._stock_base(msb.MiniMaxSparseAttnBackend)
    calls = []

    def recorder(kind):
        def fn(self, q, k, v, layer, forward_batch, save_kv_cache=True, **kw):
            calls.append((kind, layer.layer_id, forward_batch.forward_mode))
            return None, q.new_zeros(q.shape[0], q.shape[1] * q.shape[2])

        return fn

    monkeypatch.setattr(stock, "forward_extend", recorder("extend"))
    monkeypatch.setattr(stock, "forward_decode", recorder("decode"))
    return calls


def _run(runner, hybrid, mode, layer_id, ndt=0):
    shape = runner.shape
    reqs = [K.Req(tokens=[(3 * i + 1) % shape.vocab for i in range(40)], row=1),
            K.Req(tokens=[(5 * i + 2) % shape.vocab for i in range(21)], row=2)]
    new = {ForwardMode.EXTEND: [12, 21], ForwardMode.DECODE: [1, 1], ForwardMode.TARGET_VERIFY: [ndt, ndt]}[mode]
    K.place(runner, reqs, "shuffled_pages")
    committed = [len(r.tokens) - n for r, n in zip(reqs, new)] if mode == ForwardMode.TARGET_VERIFY else None
    fb = K.forward_batch(runner, mode, reqs, new, [r.slots[len(r.slots) - n:] for r, n in zip(reqs, new)],
                         seq_lens_override=committed)
    hybrid.init_forward_metadata(fb)
    data = K.TokenData(shape, seed=1)
    return K.run_layer(hybrid, K.make_layers(shape)[layer_id], fb, K.layer_inputs(data, layer_id, reqs, new))


# id: (M3Tiny changes, runner kwargs, environment, the reason in the start-up line)
WHOLE_MODEL = {
    "score_type_lse": (dict(score_type="lse"), {}, {}, "score type 'lse'"),
    "page_size_not_block_size": (dict(page_size=32), {}, {}, "page size 32 != sparse block size 16"),
    "fp8_kv_cache": ({}, dict(kv_dtype=torch.float8_e4m3fn), {}, "KV cache dtype torch.float8_e4m3fn"),
    "index_heads_per_rank": (dict(num_index_heads=4), {}, {}, "4 index heads per rank != 2 KV heads per rank"),
    "init_plus_local_over_topk": (dict(topk=2, init_blocks=1, local_blocks=2), {}, {}, "sparse config not supported"),
    "cpu_not_forced": ({}, {}, {ri.ENV_FORCE: None}, "device cpu: msa_sgl runs on CUDA (Hopper) GPUs"),
}


@pytest.mark.parametrize("case", list(WHOLE_MODEL))
def test_unsupported_model_keeps_sglang_path(stock_calls, monkeypatch, caplog, case):
    if case == "cpu_not_forced" and K.ON_GPU:
        pytest.skip("the bench runs on a GPU here")
    changes, runner_kw, env, reason = WHOLE_MODEL[case]
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    shape = dataclasses.replace(SHAPE, **changes)
    runner = K.M3MockModelRunner(shape, **runner_kw)
    try:
        with caplog.at_level(logging.INFO, logger=ri.__name__):
            hybrid = K.build_backend(runner)
        plan = hybrid.sparse.msa_sgl_plan
        assert not plan.active and any(reason in r for r in plan.reasons), plan.reasons
        lines = [r for r in caplog.records if r.name == ri.__name__]
        assert len(lines) == 1 and lines[0].levelno == logging.WARNING
        assert "msa_sgl inactive, SGLang's own path serves all 3 sparse layers" in lines[0].getMessage()
        assert reason in lines[0].getMessage()
        if case != "fp8_kv_cache":  # (an fp8 pool is not writable on the CPU)
            _run(runner, hybrid, ForwardMode.EXTEND, 3)
            _run(runner, hybrid, ForwardMode.DECODE, 1)
    finally:
        runner.close()
    if case != "fp8_kv_cache":
        assert stock_calls == [("extend", 3, ForwardMode.EXTEND), ("decode", 1, ForwardMode.DECODE)]
        assert hybrid.sparse.msa_sgl_stats == {"stock_extend": 1, "stock_decode": 1}


def test_index_value_layer_goes_to_sglang(stock_calls, caplog):
    runner = K.M3MockModelRunner(SHAPE)
    try:
        with caplog.at_level(logging.INFO, logger=ri.__name__):
            hybrid = K.build_backend(runner)
        _run(runner, hybrid, ForwardMode.EXTEND, 2)  # layer 2 keeps the index-value path
    finally:
        runner.close()
    assert stock_calls == [("extend", 2, ForwardMode.EXTEND)]
    line = [r.getMessage() for r in caplog.records if r.name == ri.__name__][0]
    assert "SGLang's path serves layers [2]: index-value path (idx_o)" in line


@pytest.mark.parametrize(
    "case, env, runner_kw, mode, why",
    [
        pytest.param("modes_env", {ri.ENV_MODES: "extend"}, {}, ForwardMode.DECODE, "MSA_SGL_MODES='extend'",
                     id="MSA_SGL_MODES_extend_only-decode"),
        pytest.param("tree_drafts", {}, dict(num_draft_tokens=4, speculative_algorithm="EAGLE", eagle_topk=4),
                     ForwardMode.TARGET_VERIFY, "tree drafts", id="eagle_tree_drafts-verify"),
    ],
)
def test_unsupported_kind_goes_to_sglang(stock_calls, monkeypatch, caplog, case, env, runner_kw, mode, why):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = K.M3MockModelRunner(SHAPE, **runner_kw)
    try:
        with caplog.at_level(logging.INFO, logger=ri.__name__):
            hybrid = K.build_backend(runner)
        plan = hybrid.sparse.msa_sgl_plan
        kind = "decode" if mode == ForwardMode.DECODE else "verify"
        assert plan.active and kind not in plan.kinds and why in plan.stock_kinds[kind]
        _run(runner, hybrid, mode, 1, ndt=runner_kw.get("num_draft_tokens", 0))
        _run(runner, hybrid, ForwardMode.EXTEND, 1)  # extend is still msa_sgl's
    finally:
        runner.close()
    assert stock_calls == [("decode" if kind == "decode" else "extend", 1, mode)]
    assert hybrid.sparse.msa_sgl_stats == {f"stock_{kind}": 1, "msa_extend": 1, "prefill_plan": 1}
    line = [r.getMessage() for r in caplog.records if r.name == ri.__name__][0]
    assert f"SGLang's path serves {kind}: " in line and why in line


def test_page_data_follows_sglang_path_too(stock_calls, monkeypatch):
    """A layer with per-page data that SGLang's path serves (here decode, by MSA_SGL_MODES)
    still gets its pages written: the data never goes stale behind msa_sgl's back."""
    monkeypatch.setenv(ri.ENV_MODES, "extend")
    runner = K.M3MockModelRunner(SHAPE)
    try:
        store = ri.attach_page_data(runner.token_to_kv_pool, SHAPE.msa_layers)
        store.trace = []
        hybrid = K.build_backend(runner)
        _run(runner, hybrid, ForwardMode.DECODE, 3)
    finally:
        runner.close()
    assert stock_calls == [("decode", 3, ForwardMode.DECODE)]
    assert len(store.trace) == 1 and store.trace[0][0] == 3 and store.trace[0][1].numel() == 2
