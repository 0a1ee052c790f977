"""The live part of ``obengine demo``: the simulated exchange (what ``obengine sim`` serves)
started in-process on loopback, the live client recording it (:class:`obengine.recorder.Recorder`)
with a live top-of-book view, two injected faults (a dropped frame: a gap, then a resync; a
truncated frame: malformed, then a resync), then the recording replayed
(:func:`obengine.replay.replay`) and checked: the replayed books must equal the live ones
exactly (seq, sync state, scales, every level).

This is the I/O layer (asyncio); :func:`run` is what ``obengine demo`` calls. Results go to
stdout, progress and diagnostics to stderr through :mod:`logging`. Nothing here touches the
internet; prices and amounts stay exact (decimal strings and int units, never floats).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from obengine._core import Book, Snapshot
    from obengine.recorder import Recorder
    from obengine.sim import SimExchange, WsFaultKind, WsFaultRule

__all__ = ["LiveResult", "book_mismatch", "record", "run", "truth_mismatch"]

log = logging.getLogger("obengine.cli")

GUARD_S = 30.0          # hang guard of every wait: past it a check fails, the demo never hangs
BATCH = 20              # market frames per push
MAX_QUEUED = 400        # no push while the server holds this many messages for the client
ROTATE_S = 1.0          # a new segment every second: the replay crosses segments and keyframes
BLOCK_S = 0.1           # a block written at least this often
RICH_REFRESH_S = 0.25   # the live view's refresh on a terminal
PLAIN_EVERY_S = 1.0     # the plain lines' period when stdout is not a terminal

Levels = tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]


@dataclass
class LiveResult:
    """What the live part did, and the checks that failed (``problems``; empty: all passed)."""

    pairs: tuple[str, ...] = ()
    url: str = ""
    seconds: float = 0.0            # from the start of the recording until every pair was exact
    pushed: int = 0                 # market frames pushed
    frames: int = 0                 # messages received and recorded
    raw_bytes: int = 0              # payload bytes of the records
    disk_bytes: int = 0             # the segment files' sizes
    segments: int = 0
    faults: list[str] = field(default_factory=list)
    gaps: int = 0
    resyncs: int = 0
    malformed: int = 0
    reconnects: int = 0
    replayed: int = 0               # FRAME records replayed (book frames, others, malformed)
    replay_s: float = 0.0           # the best timing
    problems: list[str] = field(default_factory=list)


# -- comparing books ---------------------------------------------------------------------------


def _levels(snapshot: Snapshot) -> Levels:
    return (
        tuple((Decimal(p), Decimal(a)) for p, a in snapshot["bids"]),
        tuple((Decimal(p), Decimal(a)) for p, a in snapshot["asks"]),
    )


def truth_mismatch(book: Book | None, truth: Levels) -> str | None:
    """What differs between a live book and the simulator's truth ``(bids, asks)`` (best first,
    exact ``(price, amount)``), or ``None``."""
    if book is None:
        return "no book"
    if not book.synced:
        return "book is not synced"
    got = _levels(book.snapshot())
    for name, mine, true in (("bids", got[0], truth[0]), ("asks", got[1], truth[1])):
        for i, (g, t) in enumerate(zip(mine, true)):
            if g != t:
                return f"{name}[{i}] is {g[1]:f} @ {g[0]:f}, expected {t[1]:f} @ {t[0]:f}"
        if len(mine) != len(true):
            return f"{len(mine)} {name}, expected {len(true)}"
    return None


def book_mismatch(replayed: Snapshot, live: Snapshot) -> str | None:
    """What differs between a replayed book's snapshot and the live one's, or ``None``: seq,
    sync state, scales, then every level (exact decimal strings)."""
    for key in ("seq", "synced", "price_scale", "amount_scale"):
        if replayed[key] != live[key]:
            return f"{key} {replayed[key]} replayed, {live[key]} live"
    for name in ("bids", "asks"):
        mine, theirs = replayed[name], live[name]
        for i, (r, w) in enumerate(zip(mine, theirs)):
            if tuple(r) != tuple(w):
                return f"{name}[{i}] is {r[1]} @ {r[0]} replayed, {w[1]} @ {w[0]} live"
        if len(mine) != len(theirs):
            return f"{len(mine)} {name} replayed, {len(theirs)} live"
    return None


# -- the live view -----------------------------------------------------------------------------


def _top_rows(recorder: Recorder) -> tuple[list[tuple[str, str, str, str]], str]:
    """``(pair, best bid, best ask, spread)`` per pair as exact decimals (``-``: an empty side;
    ``(pair, "syncing", "", "")`` for a pair not synced), and a line of the recorder's figures."""
    health = recorder.health(top_pairs=len(recorder.pairs))
    rows = []
    for pair in recorder.pairs:
        if pair not in health.top:
            rows.append((pair, "syncing", "", ""))
            continue
        bid, ask = health.top[pair]
        spread = "-" if bid is None or ask is None else f"{Decimal(ask) - Decimal(bid):f}"
        rows.append((pair, bid or "-", ask or "-", spread))
    h = health
    caption = (
        f"{h.frames:,} frames ({h.frames_per_s:,.0f}/s), {_size(h.disk_bytes)} on disk, "
        f"synced {h.synced}/{h.pairs}, desyncs {h.gaps}, malformed {h.malformed}, resyncs {h.resyncs}"
    )
    return rows, caption


class _PlainView:
    """Not a terminal: the top of book as plain lines, every ``PLAIN_EVERY_S`` and at the end."""

    every_s = PLAIN_EVERY_S

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.began = time.monotonic()

    def __enter__(self) -> _PlainView:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def show(self, recorder: Recorder, final: bool = False) -> None:
        rows, _ = _top_rows(recorder)
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        at = "synced" if final else f"{time.monotonic() - self.began:4.1f} s"
        for r in rows:
            if not r[2]:                                     # not synced yet
                self.out.write(f"  {at:>6}  {r[0]:<{widths[0]}}  {r[1]}\n")
                continue
            self.out.write(
                f"  {at:>6}  {r[0]:<{widths[0]}}  bid {r[1]:>{widths[1]}}  "
                f"ask {r[2]:>{widths[2]}}  spread {r[3]}\n"
            )
        self.out.flush()


class _RichView:
    """On a terminal: a table of best bid, best ask and spread per pair, redrawn in place."""

    every_s = RICH_REFRESH_S

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        # Log lines (stderr) go above the table when stderr is the terminal too.
        self._live = Live(
            console=Console(file=out), auto_refresh=False, transient=False,
            redirect_stdout=False, redirect_stderr=sys.stderr.isatty(),
        )

    def __enter__(self) -> _RichView:
        self._live.start(refresh=False)
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def show(self, recorder: Recorder, final: bool = False) -> None:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        rows, caption = _top_rows(recorder)
        title = "every pair synced and exact" if final else "live top of book"
        table = Table(title=title, title_justify="left")
        table.add_column("pair")
        for name in ("best bid", "best ask", "spread"):
            table.add_column(name, justify="right")
        for pair, bid, ask, spread in rows:
            if ask:
                table.add_row(pair, bid, ask, spread)
            else:
                table.add_row(pair, Text(bid, style="yellow"), "", "")
        self._live.update(Group(table, Text(caption, style="dim")), refresh=True)


async def _show(view: _PlainView | _RichView, recorder: Recorder) -> None:
    while True:
        await asyncio.sleep(view.every_s)
        view.show(recorder)


# -- the live run ------------------------------------------------------------------------------


def _queued(sim: SimExchange) -> int:
    """Messages the server holds for its clients."""
    assert sim.ws is not None
    return sum(c.queued for c in sim.ws.connections)


def _truth(sim: SimExchange, pair: str) -> Levels:
    bids, asks = sim.truth(pair)
    return tuple(bids), tuple(asks)


def _exact(sim: SimExchange, recorder: Recorder, pairs: Sequence[str]) -> bool:
    feed = recorder.feed
    return feed is not None and all(
        truth_mismatch(feed.books.get(p), _truth(sim, p)) is None for p in pairs
    )


class _Faults:
    """The faults the demo injects, one after the other: a dropped frame (the client sees a
    gap, then resyncs), then a truncated frame (malformed, then a resync). Each is added once
    every pair is synced and the one before has been seen by the feed, so that each shows as
    itself even with a single pair."""

    def __init__(self, sim: SimExchange, pairs: Sequence[str], result: LiveResult) -> None:
        self.sim = sim
        self.pairs = pairs
        self.result = result
        # kind, pair, the feed's counter that shows it, what it is
        self.plan: list[tuple[WsFaultKind, str, str, str]] = [
            ("drop", pairs[1 % len(pairs)], "gaps", "a dropped frame on {pair} (a gap)"),
            ("truncate", pairs[2 % len(pairs)], "malformed", "a truncated frame on {pair} (malformed)"),
        ]
        self.rules: list[WsFaultRule] = []

    @property
    def done(self) -> bool:
        """Every fault added and fired."""
        return len(self.rules) == len(self.plan) and all(r.fired for r in self.rules)

    def _seen(self, recorder: Recorder) -> bool:
        feed = recorder.feed
        if feed is None or not all(feed.synced(p) for p in self.pairs):
            return False
        stats = feed.stats
        return all(getattr(stats, plan[2]) >= 1 for plan in self.plan[: len(self.rules)])

    def step(self, recorder: Recorder, due: int) -> None:
        """Add the next fault when fewer than ``due`` are added and the feed is ready for it."""
        if len(self.rules) < min(due, len(self.plan)) and self._seen(recorder):
            kind, pair, _, what = self.plan[len(self.rules)]
            log.info("injecting a fault: %s", what.format(pair=pair))
            self.result.faults.append(what.format(pair=pair))
            self.rules.append(self.sim.ws_faults.add(kind, pair=pair))


async def _converge(
    sim: SimExchange, recorder: Recorder, pairs: Sequence[str], faults: _Faults,
    task: asyncio.Task[None], result: LiveResult,
) -> None:
    """Until every fault has been added and fired and every pair is synced and equals the
    simulator's truth, or the recorder has stopped (the caller bounds it). The market moves by
    one frame whenever the client has had everything for a while: a dropped frame shows only
    at the pair's next frame."""
    waited = 0
    while not task.done():
        faults.step(recorder, len(faults.plan))
        if faults.done and _exact(sim, recorder, pairs):
            return
        await asyncio.sleep(0.02)
        waited += 1
        if waited % 5 == 0 and _queued(sim) == 0:
            result.pushed += len(await sim.push(1))


def _not_converged(
    sim: SimExchange, recorder: Recorder, pairs: Sequence[str], faults: _Faults, result: LiveResult,
) -> None:
    """The problems of a live run that did not converge within the guard."""
    for kind, pair, _, _ in faults.plan[len(faults.rules):]:
        result.problems.append(f"{pair}: the {kind} fault was never injected (the feed never got ready for it)")
    for rule in faults.rules:
        if not rule.fired:
            result.problems.append(f"{rule.pair}: the {rule.kind} fault never fired within {GUARD_S:.0f} s")
    feed = recorder.feed
    if feed is None:
        result.problems.append(f"the feed did not open within {GUARD_S:.0f} s")
        return
    for pair in pairs:
        mismatch = truth_mismatch(feed.books.get(pair), _truth(sim, pair))
        if mismatch is not None:
            result.problems.append(
                f"{pair}: the live book differs from the simulator's truth after {GUARD_S:.0f} s: {mismatch}"
            )


async def record(
    out: Path, pairs: int, seconds: float, seed: int, *, rich: bool | None = None,
    stdout: TextIO | None = None,
) -> tuple[LiveResult, dict[str, Snapshot]]:
    """Start the simulated exchange and record ``pairs`` pairs into ``out`` while the market
    moves for ``seconds`` (as fast as the client takes it; the faults a third and two thirds of
    the way in),
    showing the top of book (a rich table when ``rich``, default: when ``stdout`` is a
    terminal; else plain lines); then wait until every pair is synced and equals the
    simulator's truth, and stop. Returns what it did (``problems`` holds the failed checks)
    and the live books' snapshots."""
    from obengine.recorder import Recorder
    from obengine.sim import SimExchange

    stdout = stdout if stdout is not None else sys.stdout
    result = LiveResult()
    live: dict[str, Snapshot] = {}
    async with SimExchange(websocket=True, pairs=pairs, seed=seed) as sim:
        names = list(sim.market.pairs)
        result.pairs, result.url = tuple(names), sim.ws_url
        print(f"live: obengine sim on {sim.ws_url}, {_count(len(names), 'pair')} ({', '.join(names)}), "
              f"seed {seed}", file=stdout, flush=True)
        recorder = Recorder(
            names, out, url=sim.ws_url, scales=sim.market.feed.scales, rotate_s=ROTATE_S,
            block_s=BLOCK_S, fsync=False, health_s=3600.0,
            feed_options={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.5},
        )
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop=stop), name="obengine-demo-record")
        use_rich = stdout.isatty() if rich is None else rich
        view: _PlainView | _RichView = _RichView(stdout) if use_rich else _PlainView(stdout)
        began = time.monotonic()
        with view:
            shower = asyncio.create_task(_show(view, recorder), name="obengine-demo-view")
            faults = _Faults(sim, names, result)
            try:
                deadline = began + seconds
                while time.monotonic() < deadline and not task.done():
                    # the faults a third and two thirds of the way in
                    faults.step(recorder, int(3 * (time.monotonic() - began) / seconds))
                    if _queued(sim) < MAX_QUEUED:
                        result.pushed += len(await sim.push(BATCH))
                    else:
                        await asyncio.sleep(0.002)
                    await asyncio.sleep(0)           # the client's turn
            finally:
                shower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shower
            log.info("waiting until every pair is synced and exact...")
            try:
                await asyncio.wait_for(_converge(sim, recorder, names, faults, task, result), GUARD_S)
            except asyncio.TimeoutError:
                _not_converged(sim, recorder, names, faults, result)
            result.seconds = time.monotonic() - began
            if recorder.feed is not None:
                view.show(recorder, final=faults.done and _exact(sim, recorder, names))
        stop.set()
        try:
            await asyncio.wait_for(task, GUARD_S)
        except asyncio.TimeoutError:
            result.problems.append(f"the recorder did not stop within {GUARD_S:.0f} s")
        except Exception as exc:  # noqa: BLE001  (a write error, ...: reported as a failed check)
            result.problems.append(f"the recorder stopped with an error: {exc}")
        feed = recorder.feed
        if feed is not None:
            live = {p: feed.books[p].snapshot() for p in names if p in feed.books}
            stats = feed.stats
            result.gaps, result.resyncs = stats.gaps + stats.crossed, stats.resyncs
            result.malformed, result.reconnects = stats.malformed, stats.reconnects
        result.frames = recorder.frames
        if recorder.recording is not None:
            result.raw_bytes = recorder.recording.raw_bytes
    segments = sorted(out.glob("*.obr"))
    result.segments = len(segments)
    result.disk_bytes = sum(s.stat().st_size for s in segments)
    if not result.problems and (result.gaps < 1 or result.malformed < 1):
        result.problems.append(
            f"the injected faults were not seen: {result.gaps} gaps, {result.malformed} malformed "
            "frames (expected at least one of each)"
        )
    return result, live


class _Drop(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def check_replay(out: Path, live: dict[str, Snapshot], result: LiveResult, repeat: int) -> list[str]:
    """Replay the recording in ``out`` (``repeat`` times, the best timing kept; the figures go
    to ``result``) and check that it replays every recorded frame into books equal to the live
    ones (``live``), exactly. Returns what failed (empty: every check passed)."""
    from obengine.replay import replay

    problems: list[str] = []

    done = replay(out)
    best_s = done.seconds
    quiet = _Drop()                   # the timing runs: the first one has logged what it found
    replay_log = logging.getLogger("obengine.replay")
    replay_log.addFilter(quiet)
    try:
        for _ in range(repeat - 1):
            best_s = min(best_s, replay(out).seconds)
    finally:
        replay_log.removeFilter(quiet)
    result.replayed = done.frames + done.ignored + done.errors
    result.replay_s = best_s
    stats = done.stats
    if stats.corrupt_blocks or stats.truncated_tail:
        problems.append(
            f"the recording is damaged: {stats.corrupt_blocks} corrupt blocks, "
            f"{stats.truncated_tail} cut tails"
        )
    if result.replayed != result.frames:
        problems.append(
            f"{result.replayed} frames replayed ({done.frames} book frames, {done.ignored} others, "
            f"{done.errors} malformed), {result.frames} recorded"
        )
    books = done.books
    for pair in sorted(set(books) - set(live)):
        problems.append(f"{pair}: a replayed book the live client did not have")
    for pair, snapshot in live.items():
        if pair not in books:
            problems.append(f"{pair}: no replayed book")
            continue
        mismatch = book_mismatch(books[pair].snapshot(), snapshot)
        if mismatch is not None:
            problems.append(f"{pair}: the replayed book differs from the live one: {mismatch}")
    return problems


# -- the command -------------------------------------------------------------------------------


@contextlib.contextmanager
def _directory(out: str | None) -> Iterator[Path]:
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="obengine-demo-") as tmp:
        yield Path(tmp) / "recording"


@contextlib.contextmanager
def _quiet_simulator() -> Iterator[None]:
    """The simulated exchange's own connection chatter at warnings only (``-v`` shows it)."""
    logger = logging.getLogger("obengine.sim")
    saved = logger.level
    if not log.isEnabledFor(logging.DEBUG):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved)


def _size(n: int) -> str:
    if n < 10_000:
        return f"{n:,} B"
    if n < 2**20:
        return f"{n / 1024:,.1f} KiB"
    return f"{n / 2**20:,.2f} MiB"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _every(n: int, what: str) -> str:
    """``all 4 live books`` or ``the live book``."""
    return f"the {what} book" if n == 1 else f"all {n} {what} books"


def _failed(problems: Sequence[str], what: str) -> int:
    for problem in problems[:20]:
        log.error("obengine demo: MISMATCH: %s", problem)
    if len(problems) > 20:
        log.error("obengine demo: ... and %d more", len(problems) - 20)
    log.error("obengine demo: FAILED: %d problem(s) in %s", len(problems), what)
    return 1


def run(pairs: int, seconds: float, seed: int, out: str | None, repeat: int, *, rich: bool | None = None) -> int:
    """The live part of ``obengine demo``; returns the exit status: 0 every check passed, 1 one
    failed (each logged, naming the pair and what differed), 2 ``out`` is unusable (it holds a
    recording already, or cannot be created), 130 interrupted (Ctrl-C)."""
    if out is not None:
        path = Path(out)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            log.error("obengine demo: --out %s: cannot create the directory: %s", out, exc)
            return 2
        if any(path.glob("*.obr")):
            log.error("obengine demo: --out %s already holds a recording: give a new directory", out)
            return 2
    repeat = max(1, repeat)
    began = time.monotonic()
    try:
        with _directory(out) as directory, _quiet_simulator():
            log.info("live: the simulated exchange on loopback, recorded for %g s...", seconds)
            result, live = asyncio.run(record(directory, pairs, seconds, seed, rich=rich))
            replay_problems: list[str] = []
            if not result.problems:
                log.info("replaying %s...", directory)
                replay_problems = check_replay(directory, live, result, repeat)
    except KeyboardInterrupt:
        log.error("obengine demo: interrupted")
        return 130
    rate = result.frames / result.seconds if result.seconds else 0.0
    ratio = result.raw_bytes / result.disk_bytes if result.disk_bytes else 0.0
    where = str(directory) if out is not None else "a temporary directory (removed; --out DIR keeps it)"
    print()
    print(
        f"live: recorded {_count(result.frames, 'frame')} in {result.seconds:.1f} s "
        f"({rate:,.0f} frames/s over loopback: simulator, websocket, feed and recorder in one "
        f"process; the market moved {result.pushed:,} times)"
    )
    print(
        f"live: {_count(result.segments, 'segment')}, {_size(result.disk_bytes)} on disk for "
        f"{_size(result.raw_bytes)} raw (compression {ratio:.1f}x), in {where}"
    )
    print(
        f"live: faults injected: {', '.join(result.faults) or 'none'}; the feed saw "
        f"{_count(result.gaps, 'gap')}, {_count(result.malformed, 'malformed frame')}, "
        f"{_count(result.resyncs, 'resync')}, {_count(result.reconnects, 'reconnect')}"
    )
    if result.problems:
        return _failed(result.problems, "the live books")
    print(
        f"check: OK, {_every(len(live), 'live')} equal{'s' if len(live) == 1 else ''} the "
        f"simulator's truth exactly, through the gap and the malformed frame"
    )
    replay_rate = result.replayed / result.replay_s if result.replay_s else 0.0
    print(
        f"replay: {_count(result.replayed, 'frame')} in {result.replay_s * 1e3:,.1f} ms "
        f"({replay_rate:,.0f} frames/s, best of {repeat})"
    )
    if replay_problems:
        return _failed(replay_problems, "the replay")
    print(
        f"check: OK, {_every(len(live), 'replayed')} equal{'s' if len(live) == 1 else ''} the "
        f"live {'one' if len(live) == 1 else 'ones'} exactly (seq, every level, scales), every "
        f"recorded frame replayed"
    )
    log.info("live part done in %.1f s", time.monotonic() - began)
    return 0
