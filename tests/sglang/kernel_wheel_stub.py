"""Stand-ins for SGLang's CUDA kernel wheels, for the GPU runs of tests/sglang only.

On CUDA, SGLang 0.5.23 imports ``sgl_kernel`` (and a few modules import ``flashinfer``) at module
level, e.g. ``from sgl_kernel import int8_scaled_mm`` in the quantization package that the KV
pools import. Those wheels are ~370 MB and cannot reach the GPU machine (64 MiB per call, no
internet). The code these tests exercise -- the MiniMax sparse backend, the KV pools, the radix
cache, SGLang's own MiniMax Triton kernels -- never calls them. So for these tests an import
finder supplies empty modules of those names whose every attribute is a function that raises
``RuntimeError`` when called: a test that reaches real sgl_kernel/flashinfer code fails loudly
instead of running something else.

Installed only when ``MSA_SGL_STUB_KERNEL_WHEELS=1`` and only for packages that are really missing
(tests/sglang/conftest.py calls :func:`install`). Never used by msa_sgl itself.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

STUBBED = ("sgl_kernel", "flashinfer")
CALLED = []  # names of stub functions that were called (each call also raises)


class _Stub:
    """Any attribute of a stub module, at any depth: attributes of it are stubs too (module-level
    code such as ``scalar_types.uint4b8`` only names them); calling one raises."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self._name}.{name}")

    def __call__(self, *args, **kwargs):
        CALLED.append(self._name)
        root = self._name.split(".")[0]
        raise RuntimeError(f"{self._name} was called, but {root} is a test stub "
                           "(tests/sglang/kernel_wheel_stub.py): this code path needs the real wheel")

    def __repr__(self):
        return f"<test stub {self._name}>"

    def __mro_entries__(self, bases):
        # ``class X(sgl_kernel.Base)`` at module level: a real, empty base whose construction
        # raises like a call.
        stub = self

        def __init__(obj, *args, **kwargs):
            stub(*args, **kwargs)

        return (type(self._name.rsplit(".", 1)[-1], (), {"__init__": __init__}),)


class _StubModule(types.ModuleType):
    __path__ = []  # a package: submodules import through the finder too
    __version__ = "0.0.0+msa-sgl-test-stub"

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Stub(f"{self.__name__}.{name}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.roots:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _StubModule(spec.name)

    def exec_module(self, module):
        pass


def install():
    """Install the finder for each of STUBBED that cannot be imported for real; returns the
    stubbed names."""
    roots = tuple(n for n in STUBBED if n not in sys.modules and importlib.util.find_spec(n) is None)
    if roots and not any(isinstance(f, _Finder) for f in sys.meta_path):
        finder = _Finder()
        finder.roots = roots
        sys.meta_path.append(finder)
    return roots
