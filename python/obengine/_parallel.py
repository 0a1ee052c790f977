"""Parallel replay: the segments of a recording replayed at once, on local processes or on a
Dask distributed cluster (the ``dask`` extra), each by :func:`obengine.replay.replay_segment`.

The I/O side of :func:`obengine.replay.replay`: processes and the network to a scheduler live
here, so that :mod:`obengine.replay` itself stays plain code.
"""
from __future__ import annotations

import importlib
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from obengine.errors import MissingExtraError

__all__ = ["run_segments"]

T = TypeVar("T")


def run_segments(
    task: Callable[[str], T],
    paths: Sequence[Path],
    *,
    workers: int,
    scheduler: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[T]:
    """``task(path)`` for every segment of ``paths`` at once, results in the order of ``paths``.

    ``task`` must be picklable (a module-level function, or a ``functools.partial`` of one).
    ``scheduler``: a Dask scheduler's address (``tcp://host:8786``) or a ``distributed.Client``;
    else ``workers`` local processes (started by a fork server: call this under
    ``if __name__ == "__main__":`` in a script). ``progress(done_bytes, total_bytes)`` after each
    segment.
    """
    names = [str(p) for p in paths]
    sizes = [Path(name).stat().st_size for name in names]
    total = sum(sizes)
    results: dict[int, T] = {}
    done = 0

    def finished(i: int, result: T) -> None:
        nonlocal done
        results[i] = result
        done += sizes[i]
        if progress is not None:
            progress(done, total)

    if scheduler is not None:
        try:
            distributed: Any = importlib.import_module("distributed")
        except ImportError as e:
            raise MissingExtraError("replay on a Dask cluster", "dask", "distributed") from e
        own = not isinstance(scheduler, distributed.Client)
        client = distributed.Client(scheduler) if own else scheduler
        try:
            futures = client.map(task, names, pure=False)
            index = {future.key: i for i, future in enumerate(futures)}
            for future in distributed.as_completed(futures):
                finished(index[future.key], future.result())
        finally:
            if own:
                client.close()
    else:
        # forkserver: workers start from a clean process, not a fork of one with threads running
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for i, result in enumerate(pool.map(task, names)):
                finished(i, result)
    return [results[i] for i in range(len(names))]
