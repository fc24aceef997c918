#!/usr/bin/env bash
# Memory-check the C hash core: build stratum._hashcore with AddressSanitizer (QAZPOOL_ASAN=1) in
# a private copy of the package (the tree's own build is left alone: other processes use it), then
# run the hash-core tests against it with libasan preloaded and Python's allocator off so ASan
# sees every allocation. With --valgrind, run them under valgrind memcheck on a normal build instead.
# Usage: scripts/memcheck.sh [--valgrind] [test files and pytest args; default: the hash-core tests]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=asan
if [ "${1:-}" = "--valgrind" ]; then mode=valgrind; shift; fi
work=$(mktemp -d /tmp/qazpool-memcheck.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r stratum tests setup.py pyproject.toml "$work/"
rm -f "$work"/stratum/*.so
cd "$work"
tests=(tests/test_hashcore.py tests/test_hashcore_props.py)
if [ $# -gt 0 ]; then tests=(); fi
if [ "$mode" = asan ]; then
  QAZPOOL_ASAN=1 QAZPOOL_REQUIRE_EXT=1 "$root/.venv/bin/python" setup.py -q build_ext --inplace >/dev/null
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
  run=("$root/.venv/bin/python")
else
  QAZPOOL_REQUIRE_EXT=1 CFLAGS="-g" "$root/.venv/bin/python" setup.py -q build_ext --inplace >/dev/null
  export PYTHONMALLOC=malloc
  # This interpreter reports errors of its own under valgrind (int.from_bytes, the eval loop) even
  # without the extension: record them from a run that never imports it, and suppress exactly those.
  valgrind --gen-suppressions=all --log-file="$work/base.log" "$root/.venv/bin/python" -c \
    'import hashlib, struct, random, pytest, hypothesis; r = random.Random(1)
[int.from_bytes(hashlib.sha256(r.randbytes(n)).digest(), "little") for n in range(300)]' || true
  awk '/^\{/,/^\}/' "$work/base.log" > "$work/base.supp"
  run=(valgrind --tool=memcheck --error-exitcode=99 --errors-for-leak-kinds=none
       --suppressions="$work/base.supp" "$root/.venv/bin/python")
fi
export PYTHONMALLOC=malloc
"${run[@]}" -c 'import stratum._hashcore as m, sys; assert m.__file__.startswith(sys.argv[1]), m.__file__; print("checking", m.__file__)' "$work"
"${run[@]}" -m pytest -p no:cacheprovider -q "${tests[@]}" "$@"
echo "memcheck ($mode): clean"
