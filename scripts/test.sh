#!/usr/bin/env bash
# The test command, from a fresh clone or a working tree: installs what is missing (system
# packages incl. the Python references the tests compare against, npm dependencies), builds the
# addon and the TypeScript, then runs the suite. Extra arguments go to vitest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-system.sh --test
if ! npm ls --depth=0 >/dev/null 2>&1; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
# Two test files run at once (vitest.config.mts): one intra-op thread each keeps libtorch and the
# Python references from oversubscribing the cores (and starving vitest's own RPC) on small machines.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
npx vitest run "$@"
