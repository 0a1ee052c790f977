"""``obengine replay``: the command line over :mod:`obengine.replay` and :mod:`obengine.export`."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from obengine.errors import MissingExtraError, RecordingError

log = logging.getLogger("obengine.replay")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INPUT, EXIT_OUTPUT, EXIT_EXTRA = 0, 1, 2, 3, 4, 5

DESCRIPTION = """\
Rebuild the books of a recording (obengine record) through the engine and print a summary per
pair: frames, gaps, resyncs, stale and crossed frames, anomalies, malformed frames and the final
top of book. Damaged blocks are skipped with a warning and counted; they never end the replay.

Optionally export what the books were: a top-N depth time series per pair as Parquet, the event
arrays hftbacktest loads, or a plot. Segments are independent: --workers N (local processes) or
--scheduler ADDRESS (a Dask cluster) replays them at once, with the same result as one pass.
"""

EPILOG = """\
examples:
  obengine replay rec/                          summary of every segment in rec/
  obengine replay 'rec/*-20261201T*.obr' --at 2026-12-01T12:00:00Z --top 5
  obengine replay rec/ --export parquet --out depth/ --depth 10 --every 1000
  obengine replay rec/ --export hftbacktest --out hbt/
  obengine replay rec/ --plot books.png --workers 2

exit status:
  0  replayed (damaged blocks and malformed frames are reported and counted, not failures)
  1  an unexpected error (a bug: please report it with the log)
  2  bad usage
  3  a path matches no file, or a file is not a recording (or of a newer format)
  4  an export or plot could not be written
  5  an optional dependency is missing (the message names the extra to install)
"""


def _time_ns(text: str) -> int:
    """An argparse type: ns since the epoch, or an ISO 8601 time (UTC unless it says)."""
    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ns since the epoch, or ISO 8601 such as 2026-12-01T12:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    delta = when - _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, not {value}")
    return value


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``replay`` to the ``obengine`` command's subparsers."""
    p = commands.add_parser(
        "replay",
        parents=parents,
        help="rebuild a recording's books; summaries, Parquet and hftbacktest exports, plots",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="segment files, directories of segments, or glob patterns (quote them); "
                        "replayed in the order of the segments' start times")
    p.add_argument("--at", type=_time_ns, default=None, metavar="TIME",
                   help="the books as they were at this receive time (ns since the epoch, or ISO "
                        "8601, UTC unless it says): reading stops at the first later frame")
    p.add_argument("--top", type=_positive, default=1, metavar="N",
                   help="levels of each side to print per pair (default: 1)")
    p.add_argument("--json", action="store_true",
                   help="print the summary as one JSON object (prices and amounts as exact "
                        "decimal strings) instead of a table")
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="replay segments on N local processes at once (default: 1)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="replay segments on a Dask distributed cluster (tcp://host:8786; the "
                        "'dask' extra); the workers must read the same paths")
    p.add_argument("--export", choices=("parquet", "hftbacktest"), default=None,
                   help="parquet: a top-N depth time series per pair ('parquet' extra); "
                        "hftbacktest: the event arrays hftbacktest loads, one .npz per pair")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where --export writes (required with --export)")
    p.add_argument("--depth", type=_positive, default=10, metavar="N",
                   help="levels per side in the Parquet export and the plot (default: 10)")
    p.add_argument("--every", type=_positive, default=1000, metavar="MS",
                   help="sampling period of the Parquet export and the plot, ms (default: 1000)")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png",
                   help="draw mid, spread and top-N depth over time per pair ('plot' extra)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.export is not None and args.out is None:
        print("obengine replay: error: --export needs --out DIR", file=sys.stderr)
        return EXIT_USAGE
    if args.at is not None and (args.workers > 1 or args.scheduler is not None):
        print("obengine replay: error: --at replays in one pass (no --workers, no --scheduler)",
              file=sys.stderr)
        return EXIT_USAGE
    from obengine import replay as replay_module

    try:
        with _progress("replay") as progress:
            result = replay_module.replay(
                args.paths, at_ns=args.at, workers=args.workers, scheduler=args.scheduler,
                progress=progress,
            )
    except RecordingError as e:
        log.error("obengine replay: %s", e)
        return EXIT_INPUT
    except MissingExtraError as e:
        log.error("obengine replay: %s", e)
        return EXIT_EXTRA
    _print_summary(result, args.top, args.json)
    if args.export is None and args.plot is None:
        return EXIT_OK
    return _exports(args)


def _exports(args: argparse.Namespace) -> int:
    from obengine import export

    parallel = {"workers": args.workers, "scheduler": args.scheduler}
    try:
        if args.export == "parquet":
            with _progress("parquet") as progress:
                files = export.to_parquet(args.paths, args.out, depth=args.depth, every_ms=args.every,
                                          progress=progress, **parallel)
            log.info("wrote %d Parquet file(s) into %s", len(files), args.out)
        elif args.export == "hftbacktest":
            with _progress("hftbacktest") as progress:
                files = export.to_hftbacktest(args.paths, args.out, progress=progress)
            log.info("wrote %d hftbacktest file(s) into %s", len(files), args.out)
        if args.plot is not None:
            with _progress("plot") as progress:
                export.plot(args.paths, args.plot, depth=args.depth, every_ms=args.every, progress=progress,
                            **parallel)
            log.info("wrote %s", args.plot)
    except MissingExtraError as e:
        log.error("obengine replay: %s", e)
        return EXIT_EXTRA
    except RecordingError as e:
        log.error("obengine replay: %s", e)
        return EXIT_INPUT
    except OSError as e:
        log.error("obengine replay: cannot write the export: %s", e)
        return EXIT_OUTPUT
    return EXIT_OK


@contextmanager
def _progress(what: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while the work runs, when stderr is a terminal; else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    bar = Progress(
        f"[bold]{what}[/]", BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=Console(stderr=True), transient=True,
    )
    task = bar.add_task(what, total=None)

    def report(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        yield report


def _text(units: Any, scale: int) -> str:
    from obengine.record.keyframe import decimal_text

    return decimal_text(int(units), scale)


def _levels(book: Any, n: int) -> dict[str, list[list[str]]]:
    bids, asks = book.top(n)
    ps, qs = book.price_scale, book.amount_scale
    return {
        "bids": [[_text(p, ps), _text(a, qs)] for p, a in bids],
        "asks": [[_text(p, ps), _text(a, qs)] for p, a in asks],
    }


def _print_summary(result: Any, top: int, as_json: bool) -> None:
    stats = result.stats
    pairs = sorted(set(result.pairs) | set(result.books))
    if as_json:
        out = {
            "segments": stats.segments, "blocks": stats.blocks, "corrupt_blocks": stats.corrupt_blocks,
            "truncated_tail": stats.truncated_tail, "bytes": stats.bytes_read, "frames": result.frames,
            "ignored": result.ignored, "errors": result.errors, "seconds": round(result.seconds, 6),
            "pairs": {},
        }
        for pair in pairs:
            entry: dict[str, Any] = dict(vars(result.pairs[pair])) if pair in result.pairs else {}
            book = result.books.get(pair)
            if book is not None:
                entry.update(seq=book.seq, synced=book.synced, **_levels(book, top))
            out["pairs"][pair] = entry
        print(json.dumps(out, indent=1))
        return
    rate = result.frames / result.seconds if result.seconds > 0 else 0.0
    print(f"{stats.segments} segment(s), {stats.blocks} block(s), {stats.bytes_read:,} bytes: "
          f"{result.frames:,} book frames in {result.seconds:.2f} s ({rate:,.0f} frames/s); "
          f"{result.ignored:,} other frames, {result.errors} malformed, "
          f"{stats.corrupt_blocks} corrupt block(s) skipped, {stats.truncated_tail} cut tail(s)")
    header = f"{'pair':<10} {'frames':>9} {'gaps':>5} {'syncs':>5} {'stale':>5} {'crossed':>7} " \
             f"{'anom':>5} {'bad':>4}  {'synced':<6} {'bid':>24} {'ask':>24}"
    print(header)
    for pair in pairs:
        s = result.pairs.get(pair)
        book = result.books.get(pair)
        counts = (f"{s.frames:>9} {s.gaps:>5} {s.syncs:>5} {s.stale:>5} {s.crossed:>7} {s.anomalies:>5} {s.errors:>4}"
                  if s is not None else " " * 47)
        if book is None:
            print(f"{pair:<10} {counts}  {'-':<6}")
            continue
        levels = _levels(book, top)
        rows = max(1, len(levels["bids"]), len(levels["asks"]))
        for i in range(rows):
            bid = " x ".join(levels["bids"][i][::-1]) if i < len(levels["bids"]) else ""
            ask = " x ".join(levels["asks"][i]) if i < len(levels["asks"]) else ""
            if i == 0:
                print(f"{pair:<10} {counts}  {'yes' if book.synced else 'no':<6} {bid:>24} {ask:>24}")
            else:
                print(f"{'':<10} {'':47}  {'':<6} {bid:>24} {ask:>24}")
