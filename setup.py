"""Builds the one native extension, ``obengine._core``; everything else is in pyproject.toml.

Environment switches (read at build time):
  OBENGINE_DEBUG=1     -O1 -g with AddressSanitizer and UndefinedBehaviorSanitizer: every read
                       past a frame's end or a side's rows, and every signed overflow, stops the
                       process with a report. The core works on raw pointers, so this, not
                       Cython's boundscheck, is what checks it. Run the tests under it with
                       LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0
                       (CI does). -fno-wrapv: Python's own CFLAGS, which come first, hold -fwrapv,
                       which defines signed overflow as wrapping and so switches UBSan's check of
                       it off (tests/test_found_by_fuzzing.py shows both).
  OBENGINE_ANNOTATE=1  write Cython's HTML annotation next to the sources (shows Python
                       interaction on the hot path).
  OBENGINE_PORTABLE=1  on x86-64, build without -msse4.2: the core then reads numbers eight bytes
                       at a time instead of with SSE4.1 vector instructions. x86-64 builds
                       otherwise need SSE4.2 (x86-64-v2), as numpy's own x86-64 wheels do; on a
                       CPU without it, importing the core raises ImportError naming this switch.
                       Other CPUs always build the portable readers.
"""
import os
import platform

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("OBENGINE_DEBUG") == "1"
ANNOTATE = os.environ.get("OBENGINE_ANNOTATE") == "1"
PORTABLE = os.environ.get("OBENGINE_PORTABLE") == "1"
# -msse4.2: SSE4.1 for the number reader (_fixed.pxi). SSE4.2 is what the import check asks for:
# every x86-64-v2 CPU has it, and numpy's own x86-64 wheels require x86-64-v2.
SIMD_ARGS = ["-msse4.2"] if platform.machine().lower() in ("x86_64", "amd64") and not PORTABLE else []

directives = {
    "language_level": 3,
    "boundscheck": DEBUG,
    "wraparound": False,
    "initializedcheck": DEBUG,
    "cdivision": True,
    "overflowcheck": False,
    "embedsignature": True,
    "auto_pickle": False,       # a Book owns raw memory: no implicit pickling
    "autotestdict": False,
    "always_allow_keywords": False,     # one-argument methods (apply) take the METH_O fast call
}

# Read by tests/test_found_by_fuzzing.py (from this file's text): keep it one literal list.
DEBUG_COMPILE_ARGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]

extension = Extension(
    "obengine._core",
    ["src/obengine/_core.pyx"],
    extra_compile_args=(DEBUG_COMPILE_ARGS if DEBUG else ["-O3"]) + SIMD_ARGS,
    extra_link_args=["-fsanitize=address,undefined"] if DEBUG else [],
    define_macros=[("CYTHON_TRACE", "0")] + ([("OBENGINE_PORTABLE", "1")] if PORTABLE else []),
)

setup(
    # Each mode writes its C to its own folder, and the extension is always recompiled: a change of
    # directives or flags alone would otherwise leave the other mode's build in place.
    ext_modules=cythonize(
        [extension],
        compiler_directives=directives,
        annotate=ANNOTATE,
        build_dir="build/cython-debug" if DEBUG else "build/cython",
    ),
    options={"build_ext": {"force": True}},
)
