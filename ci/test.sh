#!/usr/bin/env bash
# The test command (README.md): the whole suite, Hypothesis profile "ci" unless HYPOTHESIS_PROFILE says otherwise.
set -uo pipefail
cd "$(dirname "$0")/.."
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
export MSA_REQUIRE_SGLANG="${MSA_REQUIRE_SGLANG:-1}"  # tests/sglang fail, not skip, without sglang
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "ci/test.sh: pytest collected no tests: failing" >&2
  exit 1
fi
exit "$rc"
