"""msa_sgl's SGLang plugin: the entry point, SGLang's own loader picking it up, the switches,
and the pool hooks of per-page index data (real SGLang builder and sizing code)."""

import logging
import subprocess
import sys
from importlib.metadata import entry_points
from types import SimpleNamespace

import pytest
import torch

from tests.sglang.conftest import import_kit

K = import_kit()

import sglang.srt.layers.attention.minimax_sparse_backend as msb  # noqa: E402
import sglang.srt.plugins as plugins  # noqa: E402
from sglang.srt.mem_cache.kv_cache_configurator import KVCacheConfigurator  # noqa: E402
from sglang.srt.model_executor.pool_configurator import DefaultPoolConfigurator  # noqa: E402

from msa_sgl import radix_integration as ri  # noqa: E402


def test_import_does_not_import_sglang():
    code = ("import sys, msa_sgl.radix_integration; "
            "bad = sorted(m for m in sys.modules if m == 'sglang' or m.startswith('sglang.')); "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[2]))


def test_entry_point_is_declared():
    eps = {ep.name: ep for ep in entry_points(group="sglang.srt.plugins")}
    assert "msa_sgl" in eps, f"msa_sgl is not installed with its entry point (pip install -e .): {sorted(eps)}"
    assert eps["msa_sgl"].value == "msa_sgl.radix_integration:register"
    assert eps["msa_sgl"].load() is ri.register


def _load_with_sglang(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    plugins.load_plugins()  # what sglang serve / Engine / every scheduler process calls


def test_sglang_loader_installs_the_backend(sglang_hooks, monkeypatch, caplog):
    monkeypatch.setenv(ri.ENV_FORCE, "1")
    monkeypatch.delenv(ri.ENV_DISABLE, raising=False)
    monkeypatch.delenv("SGLANG_PLUGINS", raising=False)
    stock = msb.MiniMaxSparseAttnBackend
    with caplog.at_level(logging.INFO, logger="sglang.srt.plugins"):
        _load_with_sglang(monkeypatch)
    sglang_lines = [r.getMessage() for r in caplog.records]
    # the lines the README tells users to look for
    assert "Loaded plugin msa_sgl from group sglang.srt.plugins" in sglang_lines
    assert f"Applied 1 hook(s) to {ri.BACKEND_TARGET} (from: plugin=msa_sgl, dist=msa-sgl)" in sglang_lines
    caplog.clear()
    cls = msb.MiniMaxSparseAttnBackend
    assert cls is not stock and issubclass(cls, stock) and cls.__name__ == "MsaSglSparseAttnBackend"
    # SGLang's own construction path for MiniMax-M3 now builds it, inside its hybrid backend
    runner = K.M3MockModelRunner(K.M3Tiny())
    try:
        with caplog.at_level(logging.INFO, logger=ri.__name__):
            hybrid = K.build_backend(runner)
    finally:
        runner.close()
    assert type(hybrid).__name__ == "MiniMaxHybridAttnBackend"
    assert type(hybrid.sparse) is cls
    assert hybrid.sparse.msa_sgl_plan.active and hybrid.sparse.msa_sgl_plan.layers == (1, 3)
    lines = [r.getMessage() for r in caplog.records if r.name == ri.__name__]
    assert len(lines) == 1, lines
    assert "msa_sgl serves 2 of 3 sparse layers [1, 3]" in lines[0]
    assert "layers [2]: index-value path" in lines[0]
    assert "decode through msa_sgl.MSADecodeWrapper" in lines[0]  # no speculative decoding: no verify


@pytest.mark.parametrize(
    "env",
    [pytest.param({ri.ENV_DISABLE: "1"}, id="MSA_SGL_DISABLE"),
     pytest.param({"SGLANG_PLUGINS": "some_other_plugin"}, id="SGLANG_PLUGINS_filter")],
)
def test_switches_keep_sglang_path(sglang_hooks, monkeypatch, env):
    stock = msb.MiniMaxSparseAttnBackend
    _load_with_sglang(monkeypatch, **env)
    assert msb.MiniMaxSparseAttnBackend is stock
    runner = K.M3MockModelRunner(K.M3Tiny())
    try:
        hybrid = K.build_backend(runner)
    finally:
        runner.close()
    assert type(hybrid.sparse) is stock


def test_register_is_idempotent(sglang_hooks, monkeypatch):
    monkeypatch.delenv(ri.ENV_DISABLE, raising=False)
    monkeypatch.setenv(ri.ENV_PAGE_DATA, "1")
    assert ri.register() and ri.register()
    hooks = sglang_hooks._hooks
    assert len(hooks[ri.BACKEND_TARGET]) == 1
    assert len(hooks[ri.POOL_BUILDER_TARGET]) == 1 and len(hooks[ri.CELL_SIZE_TARGET]) == 1


def _configurator(shape):
    """The attributes SGLang's KV-cache configurator methods read (the methods are SGLang's)."""
    model_config = K.m3_model_config(shape)
    model_config.quantization = None
    return SimpleNamespace(
        model_config=model_config, pool_page_size=shape.page, kv_cache_dtype=shape.dtype, model_dtype=shape.dtype,
        server_args=SimpleNamespace(kv_cache_dtype="auto", attention_backend="fa3", enable_hisparse=False),
        device="cpu", layer_info=SimpleNamespace(start_layer=0, end_layer=len(shape.freq)),
        use_mla_backend=False, is_draft_worker=False,
    )


def test_page_data_hooks_allocate_and_count_memory(sglang_hooks, monkeypatch):
    shape = K.M3Tiny()
    runner = K.M3MockModelRunner(shape)  # publishes the runtime context the builders read
    try:
        cfg = _configurator(shape)
        tokens = 20 * shape.page
        stock_cell = DefaultPoolConfigurator._compute_cell_size(None, cfg, len(shape.freq))
        stock_pool = KVCacheConfigurator._build_minimax_sparse_kv_pool(cfg, max_total_num_tokens=tokens)
        assert not hasattr(stock_pool, "msa_sgl_page_data")

        monkeypatch.setenv(ri.ENV_PAGE_DATA, "1")
        assert ri.register()
        sglang_hooks.apply_hooks()
        cell = DefaultPoolConfigurator._compute_cell_size(None, cfg, len(shape.freq))
        pool = KVCacheConfigurator._build_minimax_sparse_kv_pool(cfg, max_total_num_tokens=tokens)
    finally:
        runner.close()
    layers = shape.msa_layers
    assert cell - stock_cell == len(layers) * (shape.index_dim + 4)  # fp8 key + fp32 scale per token
    store = pool.msa_sgl_page_data
    assert store.layer_ids == tuple(layers)
    rows = pool.get_index_k_buffer(layers[0]).shape[0]
    assert store.num_pages == rows // shape.page and store.page_size == shape.page
    assert store.k8[0].shape == (rows // shape.page, shape.page, shape.index_dim)
    assert store.k8[0].dtype == torch.float8_e4m3fn and store.scale[0].dtype == torch.float32
    # per token, the store is what the sizing hook added (page 0 is SGLang's padding page)
    assert store.nbytes == rows * (cell - stock_cell)


def test_page_data_is_off_by_default(sglang_hooks, monkeypatch):
    monkeypatch.delenv(ri.ENV_PAGE_DATA, raising=False)
    assert ri.register()
    assert ri.POOL_BUILDER_TARGET not in sglang_hooks._hooks and ri.CELL_SIZE_TARGET not in sglang_hooks._hooks


def test_modes_switch_rejects_unknown_kinds(monkeypatch):
    monkeypatch.setenv(ri.ENV_MODES, "extend,prefill")
    with pytest.raises(ValueError, match="MSA_SGL_MODES"):
        ri.served_kinds()
    monkeypatch.setenv(ri.ENV_MODES, "extend")
    kinds, why = ri.served_kinds()
    assert kinds == {"extend"} and "MSA_SGL_MODES" in why
