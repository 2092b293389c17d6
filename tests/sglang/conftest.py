"""Fixtures of the SGLang integration tests (tests/sglang).

SGLang is installed with --no-deps plus ci/sglang-cpu-requirements.txt. Where it is missing the
modules here are skipped, unless MSA_REQUIRE_SGLANG=1 (ci/test.sh sets it): then they fail, so
CI cannot pass by skipping. TRITON_INTERPRET=1 is set by tests/conftest.py before msa_sgl's
kernels are imported (no GPU here).
"""

import os

import pytest

if os.environ.get("MSA_SGL_STUB_KERNEL_WHEELS") == "1":  # GPU machine without SGLang's kernel wheels
    from tests.sglang import kernel_wheel_stub

    kernel_wheel_stub.install()


def import_kit():
    """tests/sglang/m3_kit.py, or a module-level skip where SGLang is missing (a failure under
    MSA_REQUIRE_SGLANG=1)."""
    try:
        from tests.sglang import m3_kit
    except ImportError as exc:  # pragma: no cover - depends on the environment
        if os.environ.get("MSA_REQUIRE_SGLANG") == "1":
            raise
        pytest.skip(f"sglang is not installed: {exc}", allow_module_level=True)
    return m3_kit


# What register() may patch, by dotted path: restored after each test (HookRegistry.reset()
# forgets hooks but does not undo patches).
_PATCHED = (
    ("sglang.srt.layers.attention.minimax_sparse_backend", "MiniMaxSparseAttnBackend"),
    ("sglang.srt.mem_cache.kv_cache_configurator", "KVCacheConfigurator", "_build_minimax_sparse_kv_pool"),
    ("sglang.srt.model_executor.pool_configurator", "DefaultPoolConfigurator", "_compute_cell_size"),
    ("sglang.srt.mem_cache.memory_pool", "MiniMaxSparseKVPool", "move_kv_cache"),
)


def _resolve(path):
    import importlib

    obj = importlib.import_module(path[0])
    for name in path[1:-1]:
        obj = getattr(obj, name)
    return obj, path[-1]


@pytest.fixture
def sglang_hooks(monkeypatch):
    """A clean plugin state for one test: SGLang's hook registry empty, its load-once guard
    reset, msa_sgl's log-once memory cleared; afterwards every patched target restored."""
    import sglang.srt.plugins as plugins
    from sglang.srt.plugins.hook_registry import HookRegistry

    from msa_sgl import radix_integration as ri

    saved = []
    for path in _PATCHED:
        obj, attr = _resolve(path)
        saved.append((obj, attr, obj.__dict__[attr]))
    HookRegistry.reset()
    monkeypatch.setattr(plugins, "_plugins_loaded", False)
    ri._LOGGED.clear()
    yield HookRegistry
    HookRegistry.reset()
    for obj, attr, value in saved:
        setattr(obj, attr, value)
    ri._LOGGED.clear()


@pytest.fixture
def msa_on(sglang_hooks, monkeypatch):
    """msa_sgl registered and applied the way SGLang's loader does, forced onto the CPU
    (Triton's interpreter) with metadata validation on."""
    from msa_sgl import radix_integration as ri

    for name in (ri.ENV_DISABLE, ri.ENV_MODES, ri.ENV_PAGE_DATA):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(ri.ENV_FORCE, "1")
    monkeypatch.setenv(ri.ENV_VALIDATE, "1")
    assert ri.register()
    sglang_hooks.apply_hooks()
    return ri
