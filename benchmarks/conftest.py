"""Fixtures of the benchmark suite: workloads (generated once per session from the seeded
simulator) and the paths of ``peers.py``.

Short mode (``--short`` or ``OBENGINE_BENCH_SHORT=1``) shortens the streams and the rounds so the
whole suite runs in well under two minutes on two cores (CI). Run the suite with
``pytest benchmarks`` (the project's ``testpaths`` only names ``tests``).
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import peers  # noqa: E402
import workloads  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("obengine benchmarks")
    group.addoption(
        "--short",
        action="store_true",
        default=False,
        help="short mode: shorter streams, fewer rounds (also OBENGINE_BENCH_SHORT=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("short", default=False):
        os.environ["OBENGINE_BENCH_SHORT"] = "1"


@pytest.fixture(scope="session")
def short() -> bool:
    return workloads.short_mode()


class _Workloads:
    def __init__(self, short: bool) -> None:
        self.short = short
        self.cache: dict[str, workloads.Workload] = {}

    def __getitem__(self, name: str) -> workloads.Workload:
        wl = self.cache.get(name)
        if wl is None:
            if name == "w5-read":
                wl = workloads.read_workload(self["w1-single"])
            else:
                wl = workloads.build(name, self.short)
            self.cache[name] = wl
        return wl


@pytest.fixture(scope="session")
def workload_data(short: bool) -> _Workloads:
    return _Workloads(short)


@pytest.fixture(params=peers.PATHS, ids=[cls.name for cls in peers.PATHS])
def path_cls(request: pytest.FixtureRequest) -> type[peers.Path]:
    cls: type[peers.Path] = request.param
    reason = cls.unavailable()
    if reason is not None:
        if cls.kind == "obengine" and os.environ.get("OBENGINE_BENCH_REQUIRE_CORE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return cls
