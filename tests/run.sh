#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, and runs every
# suite: unit, integration, feature, cluster (release build), unit and integration
# again under ASan+UBSan, and the fuzz targets for a bounded time. Ends with one line
# "N passed, N failed, N skipped".
#
#   tests/run.sh                      everything
#   tests/run.sh --suite unit         one meson suite of the main build (repeatable)
#   MIG_FUZZ_SECONDS=300 tests/run.sh longer fuzzing (default 30 s per target)
#   MIG_SANITIZE=0 tests/run.sh       skip the sanitizer pass
set -uo pipefail
source "$(dirname "$0")/lib/setup.sh"
cd "$MIG_ROOT"

suites=()
while [ $# -gt 0 ]; do
  case $1 in
    --suite) suites+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tests/run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

mig_install_deps || exit 1

logs=()          # testlog.json of every meson test run, for the final count
build_failures=0  # a build that fails counts as one failed test
run_meson_tests() {  # DIR [meson test args...]
  local dir=$1; shift
  echo "== meson test -C $dir $*"
  meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
  logs+=("$dir/meson-logs/testlog.json")
}

mig_build build -Dbuildtype=debugoptimized || exit 1
if [ ${#suites[@]} -gt 0 ]; then
  args=(); for s in "${suites[@]}"; do args+=(--suite "$s"); done
  run_meson_tests build "${args[@]}"
else
  run_meson_tests build --no-suite fuzz
  if [ "${MIG_SANITIZE:-1}" != 0 ]; then
    if mig_build build-asan -Db_sanitize=address,undefined -Db_lundef=false; then
      # integration too: libmig.so and the programs under it are built without
      # sanitizers, but the tools these tests drive (migctl checkpoint/restart, the fake
      # relay's dispatcher) are sanitized here.
      ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_meson_tests build-asan --suite unit --suite integration
    else
      build_failures=$((build_failures + 1))
    fi
  fi
  secs=${MIG_FUZZ_SECONDS:-30}
  if CXX=clang++-14 mig_build build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
      -Db_lundef=false && meson configure build-fuzz -Dfuzz_seconds="$secs" >/dev/null; then
    run_meson_tests build-fuzz --suite fuzz
  else
    build_failures=$((build_failures + 1))
  fi
fi

# One count over every run; a build that failed before testing counts as a failure.
python3 - "$build_failures" "${logs[@]}" <<'PY'
import json, sys
passed = skipped = 0
failed = int(sys.argv[1])
for path in sys.argv[2:]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        failed += 1
        continue
    for line in lines:
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): passed += 1
        elif r == "SKIP": skipped += 1
        else: failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed else 0)
PY
