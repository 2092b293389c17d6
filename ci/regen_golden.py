"""Regenerates tests/golden/ (payloads and manifest) from harness.golden.CASES with the
float64 reference. Run from the repository root: python ci/regen_golden.py"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.golden import GOLDEN_DIR, regenerate  # noqa: E402

if __name__ == "__main__":
    names = regenerate()
    print(f"wrote {len(names)} golden cases to {GOLDEN_DIR}: {', '.join(names)}")
