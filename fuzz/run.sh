#!/usr/bin/env bash
# Fuzz obengine's native core with atheris (see fuzz/README.md). Run from anywhere:
#
#   bash fuzz/run.sh [SECONDS] [-- LIBFUZZER_ARGS...]
#       Copies the working tree to .fuzz/src, builds the core there with clang (AddressSanitizer,
#       UndefinedBehaviorSanitizer, libFuzzer coverage) into its own venv .fuzz/venv (never the
#       normal build; rebuilt only when src/, python/, setup.py, pyproject.toml or setup.py's
#       OBENGINE_DEBUG / OBENGINE_PORTABLE changed), makes
#       the seed corpus if missing, then fuzzes for SECONDS (default 600). Needs clang-14
#       (Debian: apt-get install -y clang-14). Exit status 0: nothing found.
#   bash fuzz/run.sh --quick [RUNS]
#       No clang: the harness on the obengine installed in the current python environment (a gcc
#       build: coverage feedback comes from the reference model's Python code only), RUNS inputs
#       (default 5000, 12-25 s). Installs atheris there if missing. For CI.
#   bash fuzz/run.sh --explain FILE...
#       Replays saved inputs (.fuzz/crashes/crash-*) and prints every frame's outcome, under the
#       sanitizer build when there is one.
#   bash fuzz/run.sh --coverage
#       Line coverage of the core's .pyx/.pxi sources by the corpus (clang source-based coverage
#       and llvm-cov-14, from a separate build in .fuzz/cov).
#
# Everything generated goes to .fuzz/ (git-ignored): venv, src, seeds, corpus (what the fuzzer
# found), crashes, cov. Environment: FUZZ_SOURCE=REV fuzzes a git revision (git archive) with
# the working tree's fuzz/ instead of the working tree; FUZZ_STATE (instead of .fuzz); CLANG
# (clang-14); FUZZ_WRAPV=1 keeps Python's -fwrapv (which hides signed overflow from UBSan);
# FUZZ_REBUILD=1; FUZZ_PYTHONMALLOC=malloc; FUZZ_CHECK_<NAME>=0/1 and FUZZ_CHECK_ALL=1 (the
# switches at the top of fuzz_core.py).
set -euo pipefail

ATHERIS_VERSION=3.0.0
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
state=${FUZZ_STATE:-$root/.fuzz}
CLANG=${CLANG:-clang-14}
max_len=16384
src=$state/src          # the snapshot fuzzed: core, reference model and harness together
venv=$state/venv

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# Files of the working tree: tracked and new ones, not ignored ones (no build outputs).
tree_files() {  # [PATH...]
    git ls-files -z --cached --others --exclude-standard -- "$@" \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
}

snapshot() {  # the tree to fuzz -> $src (its build/ kept: the reports point into its C)
    mkdir -p "$src"
    find "$src" -mindepth 1 -maxdepth 1 ! -name build -exec rm -rf {} +
    if [ -n "${FUZZ_SOURCE:-}" ]; then
        git archive "$FUZZ_SOURCE" | tar -x -C "$src"
        rm -rf "$src/fuzz"
        tree_files fuzz | tar --null -T - -cf - | tar -x -C "$src"
    else
        tree_files | tar --null -T - -cf - | tar -x -C "$src"
    fi
}

core_hash() {  # of what the build depends on, in the snapshot
    (cd "$src" && find src python setup.py pyproject.toml -type f -print0 | sort -z \
        | xargs -0 sha1sum | sha1sum | cut -c1-40)
}

need_clang() {
    if ! command -v "$CLANG" >/dev/null; then
        echo "fuzz/run.sh: $CLANG not found (Debian: apt-get update && apt-get install -y clang-14;" \
             "or set CLANG=...). Without clang: bash fuzz/run.sh --quick" >&2
        exit 2
    fi
}

# The fuzzing build: its own venv, the core compiled by clang with ASan, UBSan and libFuzzer's
# coverage instrumentation (fuzzer-no-link: counters and comparison hooks; libFuzzer itself comes
# with atheris).
build_fuzz() {
    need_clang
    snapshot
    # Every UBSan check aborts. pointer-overflow is left out: Cython's own argument parsing
    # computes `args + nargs` with args NULL and nargs 0 (__Pyx_KwValues_FASTCALL, on every call
    # without arguments), and UBSan's suppressions cannot single it out (they see no function
    # name in this runtime). That check only catches address wrap-around and NULL arithmetic;
    # ASan still catches every access outside an allocation.
    local flags="-g -fno-omit-frame-pointer -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize=pointer-overflow -fno-sanitize-recover=all"
    # Python's own CFLAGS carry -fwrapv, under which signed overflow is defined and UBSan does not
    # check it; -fno-wrapv (after them) turns the check back on.
    [ "${FUZZ_WRAPV:-0}" = 1 ] || flags="$flags -fno-wrapv"
    local stamp
    # setup.py's build switches are part of what was built (OBENGINE_PORTABLE: the number reader)
    stamp="$(core_hash) $CLANG $flags debug=${OBENGINE_DEBUG:-0} portable=${OBENGINE_PORTABLE:-0}"
    if [ "${FUZZ_REBUILD:-0}" != 1 ] && [ -f "$state/build.stamp" ] && [ "$(cat "$state/build.stamp")" = "$stamp" ]; then
        echo "fuzz/run.sh: the core is unchanged: reusing the fuzzing build in $venv"
        return
    fi
    rm -f "$state/build.stamp"
    rm -rf "$src/build"     # fresh C: cythonize goes by file times, which a snapshot does not order
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip
    fi
    # the core is installed with --no-deps below: what the harness imports is installed here
    # (zstandard: the recording blocks it gives BookSet.apply_block, made by obengine.record)
    "$venv/bin/python" -m pip install --quiet "atheris==$ATHERIS_VERSION" "numpy>=1.23" \
        "zstandard>=0.22" "setuptools>=70.1" "wheel" "Cython>=3.0"
    echo "fuzz/run.sh: building the core with $CLANG ($flags)"
    # setuptools puts CC in place of gcc in Python's LDSHARED and appends CFLAGS and LDFLAGS to
    # Python's flags; setup.py's -O3 comes last.
    if ! (cd "$src" && CC=$CLANG CFLAGS="$flags" LDFLAGS="$flags" \
        "$venv/bin/python" -m pip install --no-build-isolation --no-deps --no-cache-dir \
        --force-reinstall --verbose .) > "$state/build.log" 2>&1; then
        tail -40 "$state/build.log" >&2
        echo "fuzz/run.sh: the build failed; its log: $state/build.log" >&2
        exit 1
    fi
    # (Not importable without the LD_PRELOAD below: its sanitizer symbols come from there.)
    local so symbols
    so=$("$venv/bin/python" -c "import glob, sysconfig; print(*glob.glob(sysconfig.get_paths()['platlib'] + '/obengine/_core*.so'))")
    symbols=$(nm -D "$so")
    if [[ $symbols != *__sanitizer_cov_8bit_counters_init* || $symbols != *__asan_init* || $symbols != *__ubsan_handle* ]]; then
        echo "fuzz/run.sh: $so lacks libFuzzer coverage, ASan or UBSan symbols" >&2
        exit 1
    fi
    echo "$stamp" > "$state/build.stamp"
}

# The fuzzing venv's python with atheris's ASan+UBSan+libFuzzer runtime preloaded (the build's
# sanitizer and coverage symbols come from it). No leak detection: the interpreter keeps memory
# until exit. A read past a frame's end: ASan sees it for frames over 512 bytes (CPython takes
# those from malloc) and for the frames the harness hands over in an exactly sized malloc'ed buffer
# (mode bits 0-1 = 3); FUZZ_PYTHONMALLOC=malloc makes every Python object its own malloc, which
# sees it for every frame but runs 2-3 times slower.
fuzz_python() {
    local preload
    preload="$("$venv/bin/python" -c 'import atheris; print(atheris.path())')/asan_with_fuzzer.so"
    PYTHONMALLOC=${FUZZ_PYTHONMALLOC:-pymalloc} \
    ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:handle_abort=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LD_PRELOAD="$preload" \
        "$venv/bin/python" "$@"
}

ensure_seeds() {  # $1...: the python command to run make_corpus.py with, and the script
    if [ ! -d "$state/seeds" ] || [ -z "$(ls -A "$state/seeds")" ]; then
        "$@" "$state/seeds"
    fi
}

run_fuzz() {  # $1: seconds, rest: extra libFuzzer arguments
    local seconds=$1
    shift
    ensure_seeds fuzz_python "$src/fuzz/make_corpus.py"
    mkdir -p "$state/corpus" "$state/crashes"
    echo "fuzz/run.sh: fuzzing for $seconds s; corpus $state/corpus (+ seeds), crashes to $state/crashes/"
    local rc=0
    fuzz_python "$src/fuzz/fuzz_core.py" \
        -max_total_time="$seconds" -max_len=$max_len -timeout=30 -rss_limit_mb=4096 \
        -dict="$src/fuzz/frames.dict" -artifact_prefix="$state/crashes/" -print_final_stats=1 \
        "$@" "$state/corpus" "$state/seeds" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "fuzz/run.sh: the fuzzer stopped with status $rc; newest inputs in $state/crashes/:" >&2
        ls -t "$state/crashes" | head -5 >&2 || true
        echo "replay one: bash fuzz/run.sh --explain $state/crashes/FILE" >&2
    fi
    return "$rc"
}

run_quick() {  # $1: runs
    local runs=$1
    python -c "import atheris" 2>/dev/null || python -m pip install --quiet "atheris==$ATHERIS_VERSION"
    ensure_seeds python fuzz/make_corpus.py
    mkdir -p "$state/crashes"
    local work rc=0
    work=$(mktemp -d)
    echo "fuzz/run.sh --quick: $runs inputs on $(python -c 'import obengine; print(obengine.__file__)')"
    # FUZZ_INSTRUMENT_REFERENCE=1: atheris instruments the reference model's Python code, the
    # only coverage it sees with a gcc build. -seed=1: the same inputs every run.
    FUZZ_INSTRUMENT_REFERENCE=1 python fuzz/fuzz_core.py \
        -runs="$runs" -seed=1 -max_len=$max_len -timeout=30 -dict=fuzz/frames.dict \
        -artifact_prefix="$state/crashes/" -print_final_stats=1 \
        "$work" "$state/seeds" || rc=$?
    rm -rf "$work"
    if [ "$rc" -ne 0 ]; then
        echo "fuzz/run.sh --quick: failed (status $rc); replay: bash fuzz/run.sh --explain $state/crashes/FILE" >&2
    fi
    return "$rc"
}

# Line coverage of the .pyx/.pxi sources: a build with clang's source-based coverage, its C
# written by Cython with #line directives (emit_linenums), which pyx_coverage.py uses to give each
# C line to its source line; the seeds and the corpus are replayed once, without atheris.
run_coverage() {
    need_clang
    local suffix cov=$state/cov
    suffix=$(basename "$CLANG")
    suffix=${suffix#clang}      # clang-14 -> llvm-cov-14
    [ -f "$state/build.stamp" ] || build_fuzz
    snapshot
    ensure_seeds fuzz_python "$src/fuzz/make_corpus.py"
    mkdir -p "$state/corpus"
    rm -rf "$cov"
    mkdir -p "$cov"
    cp -r "$src" "$cov/src"
    rm -rf "$cov/src/build"     # the C is written anew, with the line directives
    local flags="-fprofile-instr-generate -fcoverage-mapping"
    (cd "$cov/src" && CC=$CLANG CFLAGS="$flags" LDFLAGS="$flags" "$venv/bin/python" - <<'EOF'
import runpy, sys
import Cython.Build
cythonize = Cython.Build.cythonize
def cythonize_with_line_directives(*args, **kwargs):
    kwargs["emit_linenums"] = True
    return cythonize(*args, **kwargs)
Cython.Build.cythonize = cythonize_with_line_directives
sys.argv = ["setup.py", "-q", "build_ext", "--inplace"]
runpy.run_path("setup.py", run_name="__main__")
EOF
    )
    LLVM_PROFILE_FILE="$cov/replay-%p.profraw" PYTHONPATH="$cov/src/python" \
        "$venv/bin/python" "$cov/src/fuzz/fuzz_core.py" --replay "$state/seeds" "$state/corpus"
    "llvm-profdata$suffix" merge -sparse "$cov"/*.profraw -o "$cov/core.profdata"
    local so
    so=$(ls "$cov"/src/python/obengine/_core*.so)
    "llvm-cov$suffix" export -format=lcov "$so" -instr-profile="$cov/core.profdata" > "$cov/core.lcov"
    "$venv/bin/python" "$src/fuzz/pyx_coverage.py" "$cov/src/build/cython/src/obengine/_core.c" \
        "$cov/core.lcov" | tee "$cov/report.txt"
    echo "fuzz/run.sh --coverage: lines never reached: $venv/bin/python fuzz/pyx_coverage.py" \
        "$cov/src/build/cython/src/obengine/_core.c $cov/core.lcov --missed _frame.pxi"
}

case "${1:-}" in
    -h|--help) usage ;;
    --quick) run_quick "${2:-5000}" ;;
    --coverage) run_coverage ;;
    --explain)
        shift
        if [ -f "$state/build.stamp" ]; then fuzz_python "$src/fuzz/fuzz_core.py" --explain "$@"
        else python fuzz/fuzz_core.py --explain "$@"; fi
        ;;
    --build-only) build_fuzz ;;
    *)
        seconds=600
        if [ $# -gt 0 ] && [ "$1" != "--" ]; then seconds=$1; shift; fi
        [ "${1:-}" = "--" ] && shift
        build_fuzz
        run_fuzz "$seconds" "$@"
        ;;
esac
