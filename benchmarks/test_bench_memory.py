"""Memory per book (100+100 levels) and for 380 books, per path, recorded in the benchmark JSON.

Each path is measured in a fresh process (``memory.py``); the figures go to ``extra_info`` of a
trivial benchmark in group ``memory`` so that ``report.py`` finds them next to the timings.
"""
from __future__ import annotations

import pytest

import memory
import peers


@pytest.fixture(scope="session")
def snapshots_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return memory.write_snapshots(str(tmp_path_factory.mktemp("memory")))


def test_memory(benchmark, path_cls: type[peers.Path], snapshots_file: str) -> None:
    if path_cls.kind == "floor":
        pytest.skip("the floor keeps no book")
    result = memory.measure_in_subprocess(path_cls.name, snapshots_file)
    assert result["levels_per_side"] == [100, 100]
    benchmark.group = "memory"
    benchmark.extra_info.update(result, workload="memory", kind=path_cls.kind, exact=path_cls.exact)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
