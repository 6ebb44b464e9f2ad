#!/usr/bin/env bash
# Mutation testing of the core modules (issue 30), on demand — not in CI: every mutant is a build and a test run,
# hours for the whole list on a 2-core machine. Split by module, each under its own time limit:
#
#   bash scripts/mutants.sh                          # every module below, one after another
#   bash scripts/mutants.sh src/routing/cooling.rs   # one module
#   MUTANTS_TESTS=full bash scripts/mutants.sh FILE  # the unit and integration tests (default: unit tests only)
#   MUTANTS_ARGS="-F 'in Log::add'" bash scripts/mutants.sh FILE   # only the mutants whose names match (re-running
#                                                    # survivors); -E REGEX leaves some out (cargo-mutants' flags)
#
# cargo-mutants (pinned) makes one-token mistakes in the file — an operator flipped, a constant changed, a body
# replaced by a default — and runs the tests against each. Its reports go to target/mutants/<module>/; the
# script prints each module's score: caught / (caught + missed), the mutants listed as equivalent in
# mutants/equivalent.txt left out. Every survivor is either caught by a new test or explained there.
#
# It mutates this tree in place (`--in-place`: the build stays incremental instead of starting from nothing in a
# copy for every module), restoring each file afterwards: do not edit or commit while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=26.2.0
if ! cargo mutants --version 2>/dev/null | grep -q "$VERSION"; then
  cargo install --locked cargo-mutants --version "$VERSION"
fi

MODULES=(
  src/error.rs
  src/routing/cooling.rs
  src/routing/retry.rs
  src/routing/breaker.rs
  src/routing/deadline.rs
  src/core/cache.rs
  src/admission/limits.rs
  src/upstream/sse.rs
  src/upstream/utf16.rs
  src/upstream/retry_after.rs
  src/grpc/codec.rs
  src/core/memory.rs
)
[ $# -gt 0 ] && MODULES=("$@")
# Unit tests only by default: they hold most of these modules' checks and take seconds, not minutes.
TEST_ARGS=(--lib)
[ "${MUTANTS_TESTS:-unit}" = full ] && TEST_ARGS=()
LIMIT=${MUTANTS_LIMIT:-3600}
# Every mutant is an incremental build of the crate: without debug info it compiles and links faster (in its own
# target folder, so the test command's builds are not undone).
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0 CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/mutants-build}
# The fuzz harness's properties run 32 cases each instead of 256: a mutant they catch is caught in the first
# few cases, and the run spends its time on builds, not on the same property again.
export PROPTEST_CASES=${PROPTEST_CASES:-32}

for file in "${MODULES[@]}"; do
  name=$(basename "$file" .rs)
  out=target/mutants/$name
  mkdir -p "$out"
  echo "== $file"
  # A mutant that fails a fuzz property makes proptest save the failing case: keep the file as it was.
  cp src/fuzz.regressions "$out/fuzz.regressions.kept"
  eval "extra=(${MUTANTS_ARGS:-})"
  # A mutant that loops forever times out (counted apart): at 5x the unmutated tests' time, at least a minute,
  # not a fixed five minutes (six such mutants once took half an hour of the module's hour).
  timeout "$LIMIT" cargo mutants --in-place --file "$file" --timeout-multiplier 5 --minimum-test-timeout 60 \
    --output "$out" "${extra[@]}" \
    -- "${TEST_ARGS[@]}" > "$out/run.log" 2>&1 || true
  cp "$out/fuzz.regressions.kept" src/fuzz.regressions
  python3 - "$out/mutants.out" "$file" <<'PY'
import pathlib, sys
out, file = pathlib.Path(sys.argv[1]), sys.argv[2]
def lines(path):
    return [l.strip() for l in path.read_text().splitlines() if l.strip()] if path.exists() else []
# mutants/equivalent.txt: one mutant per line as cargo-mutants names it, then " # why it changes nothing".
equivalent = {l.split(" # ")[0].strip() for l in lines(pathlib.Path("mutants/equivalent.txt")) if not l.startswith("#")}
caught, missed, timeout = (lines(out / n) for n in ("caught.txt", "missed.txt", "timeout.txt"))
missed_real = [m for m in missed if m not in equivalent]
score = len(caught) / max(1, len(caught) + len(missed_real))
print(f"{file}: {len(caught)} caught, {len(missed_real)} missed, {len(missed) - len(missed_real)} equivalent, "
      f"{len(timeout)} timed out: score {100 * score:.0f}%")
for m in missed_real:
    print(f"  missed: {m}")
PY
done
