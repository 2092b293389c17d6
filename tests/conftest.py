import os

import torch

# Without a GPU the kernels run in Triton's interpreter, chosen before msa_sgl.ops is imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import HealthCheck, settings

from harness.strategies import DRAW_COUNT

# Profiles: "ci" (default; the README test command, sized for the 2-core CI machine),
# "dev" (quick local loop), "thorough" (long fuzzing runs).
_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], print_blob=True)
settings.register_profile("ci", max_examples=int(os.environ.get("MSA_CI_EXAMPLES", "200")), **_common)
settings.register_profile("dev", max_examples=10, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"hypothesis: {DRAW_COUNT['problems']} MSA problems drawn in this run")
