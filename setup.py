"""Builds the one native extension, ``obengine._core``; everything else is in pyproject.toml.

Environment switches (read at build time):
  OBENGINE_DEBUG=1     bounds and initialisation checks on, -O0 -g: run the tests under it too.
  OBENGINE_ANNOTATE=1  write Cython's HTML annotation next to the sources (shows Python
                       interaction on the hot path).
"""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("OBENGINE_DEBUG") == "1"
ANNOTATE = os.environ.get("OBENGINE_ANNOTATE") == "1"

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

extension = Extension(
    "obengine._core",
    ["src/obengine/_core.pyx"],
    extra_compile_args=["-O0", "-g"] if DEBUG else ["-O3"],
    define_macros=[("CYTHON_TRACE", "0")],
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
