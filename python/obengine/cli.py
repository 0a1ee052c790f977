"""The ``obengine`` command line.

Subcommands:

- ``obengine demo``: the end-to-end run with no network and no account. It simulates a BtcTurk
  ``obdiff`` feed (:class:`obengine.simulator.FeedSimulator`), applies every frame to an
  :class:`obengine.BookSet`, prints the top levels of a few books as exact decimals, checks every
  book against the simulator's truth (exit status 1 on any difference), and prints throughput of
  the engine against ``json.loads`` alone (and ``orjson.loads`` when it is installed) on the
  same frames. Then, for ``--live-seconds`` (3 s; 0 skips it), the live part
  (:mod:`obengine._demo`): the simulated exchange in-process on loopback, the live client
  recording it with a top-of-book view, a dropped and a malformed frame injected, the recording
  replayed and its books checked against the live ones, exactly.
- ``obengine sim``: the simulated exchange's REST side (:class:`obengine.sim.SimExchange`) on
  loopback: BtcTurk's REST API (public and signed), its graph host's ``/v1/ohlcs`` and Kraken's
  websocket-token endpoint on one port, over a seeded simulated market that moves by itself. It
  prints the URLs and the simulator's demo credentials (``OBENGINE_BTCTURK_PUBLIC_KEY=...``
  lines, keys that open only the simulator), logs one line per request on stderr, and stops
  cleanly (exit status 0) on Ctrl-C or SIGTERM.

- ``obengine record``: the live feed written byte for byte into a recording
  (:mod:`obengine._cli_record`, exit codes in its ``--help``).
- ``obengine replay``: a recording's books rebuilt, summed up per pair, exported (Parquet,
  hftbacktest) or plotted (:mod:`obengine._cli_replay`).
- ``obengine serve``: a recording played back as an exchange-compatible websocket feed on
  loopback (:mod:`obengine._cli_serve`).

Exit status: 0 success, 1 a check failed, 2 bad usage (each command documents more). Results go to stdout; progress and
diagnostics go to stderr through :mod:`logging` (``-v`` for more, ``-q`` for less).
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

__all__ = ["main"]

log = logging.getLogger("obengine.cli")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, not {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0..65535 (0: any free port)."""
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


def _pairs_or_count(text: str) -> int | list[str]:
    """An argparse type: a number of pairs (>= 1) or a comma list of pair symbols."""
    text = text.strip()
    if text.isdigit():
        return _positive_int(text)
    names = [name.strip().upper().replace("_", "") for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a number of pairs or a comma list of pairs")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"a pair is given twice: {text!r}")
    return names


def _build_parser() -> argparse.ArgumentParser:
    from obengine import __version__

    verbosity = argparse.ArgumentParser(add_help=False)
    group = verbosity.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="store_const", const=logging.DEBUG, dest="log_level",
        default=argparse.SUPPRESS, help="log more (debug) on stderr",
    )
    group.add_argument(
        "-q", "--quiet", action="store_const", const=logging.WARNING, dest="log_level",
        default=argparse.SUPPRESS, help="log only warnings and errors on stderr",
    )

    parser = argparse.ArgumentParser(
        prog="obengine",
        description="Exact L2 order books for BtcTurk, from raw websocket frames.",
        parents=[verbosity],
    )
    parser.add_argument("--version", action="version", version=f"obengine {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[verbosity],
        help="simulate a feed, keep its books, check them and measure throughput; then record "
             "the simulated exchange live, replay the recording and check it",
        description=(
            "Run a seeded simulated BtcTurk obdiff feed through obengine.BookSet (no network, "
            "no account): print the top levels of a few books, check every book against the "
            "simulator's truth (exit status 1 on a difference), and compare throughput with "
            "json.loads (and orjson, when installed) on the same frames. Then the live part "
            "(--live-seconds, 0 skips it): start the simulated exchange (obengine sim) "
            "in-process on loopback, connect the live client and record it with a live "
            "top-of-book view, inject a dropped and a malformed frame, wait until every book "
            "equals the simulator's truth, replay the recording and check that the replayed "
            "books equal the live ones exactly (exit status 1 on any difference)."
        ),
    )
    demo.add_argument("--pairs", type=_positive_int, default=22, metavar="N",
                      help="number of pairs, the 22 bundled ones first (default: 22; the "
                           "exchange has about 380)")
    demo.add_argument("--frames", type=_positive_int, default=20_000, metavar="N",
                      help="number of frames on the simulated socket (default: 20000)")
    demo.add_argument("--seed", type=int, default=0, help="simulator seed (default: 0)")
    demo.add_argument("--profile", choices=("typical", "hard"), default="typical",
                      help="typical: 1-30 changes a frame, rare big ones; hard: 100-200 "
                           "changes a frame and fast price moves (default: typical)")
    demo.add_argument("--show", type=_non_negative_int, default=2, metavar="N",
                      help="print the top levels of the first N books (default: 2)")
    demo.add_argument("--depth", type=_positive_int, default=5, metavar="N",
                      help="levels per side to print (default: 5)")
    demo.add_argument("--repeat", type=_positive_int, default=3, metavar="N",
                      help="time each path N times on the same frames, keep the best "
                           "(default: 3)")
    demo.add_argument("--live-seconds", type=_non_negative_seconds, default=3.0, metavar="S",
                      help="then the live part: the simulated exchange on loopback, recorded "
                           "for S seconds with a live top-of-book view, replayed and checked "
                           "(default: 3; 0 skips it)")
    demo.add_argument("--live-pairs", type=_positive_int, default=4, metavar="N",
                      help="pairs of the live part (default: 4)")
    demo.add_argument("--out", default=None, metavar="DIR",
                      help="keep the live part's recording in DIR, a new directory (default: "
                           "a temporary directory, removed at the end)")
    demo.set_defaults(handler=_demo)

    sim = commands.add_parser(
        "sim",
        parents=[verbosity],
        help="run a simulated BtcTurk exchange (REST API and websocket feed) on loopback "
             "(no network, no account)",
        description=(
            "Serve a simulated BtcTurk REST API (public and signed endpoints, the graph host's "
            "/v1/ohlcs) and Kraken's GetWebSocketsToken on one loopback port, and BtcTurk's "
            "websocket feed (obdiff, orderbook, trade, ticker, login) on another, over one "
            "seeded simulated market and a paper-trading account. Prints the URLs and the "
            "simulator's demo credentials; logs one line per request on stderr; Ctrl-C or "
            "SIGTERM stops it."
        ),
    )
    sim.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default: 127.0.0.1)")
    sim.add_argument("--port", type=_port, default=0,
                     help="port to listen on (default: 0, a free port, printed)")
    sim.add_argument("--ws-port", type=_port, default=0,
                     help="port of the websocket feed (default: 0, a free port, printed)")
    sim.add_argument("--pairs", type=_pairs_or_count, default=None, metavar="N|PAIRS",
                     help="a number of pairs (the bundled ones first) or a comma list such as "
                          "BTCTRY,ETHUSDT (default: 24)")
    sim.add_argument("--seed", type=int, default=0, help="market seed (default: 0)")
    sim.add_argument("--tick", type=float, default=0.5, metavar="SECONDS", dest="tick_s",
                     help="advance the market every SECONDS; 0 keeps it still (default: 0.5)")
    sim.add_argument("--frames-per-tick", type=_positive_int, default=10, metavar="N",
                     help="feed frames per advance (default: 10)")
    sim.set_defaults(handler=_sim)

    from obengine import _cli_record, _cli_replay, _cli_serve

    _cli_record.register(commands, [verbosity])
    _cli_replay.register(commands, [verbosity])
    _cli_serve.register(commands, [verbosity])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``obengine`` command line with ``argv`` (default ``sys.argv[1:]``); return the
    exit status (0 success, 1 a check failed, 2 bad usage)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print("obengine: error: a command is required (try: obengine demo)", file=sys.stderr)
        return 2
    logger = logging.getLogger("obengine")
    saved = (logger.level, logger.propagate)
    cli_handler = _setup_logging(getattr(args, "log_level", logging.INFO))
    try:
        return handler(args)
    finally:
        # A caller that runs main() in its own process (a test, a notebook) gets its logging back.
        logger.removeHandler(cli_handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``main`` puts on the ``obengine`` logger while a command runs; it writes to
    whatever ``sys.stderr`` is when a record comes (also from the simulator's threads)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging(level: int) -> logging.Handler:
    """Send the ``obengine`` loggers' records at ``level`` and above to stderr, bare messages.
    Only the ``obengine`` logger is touched, never the root logger. Returns the handler."""
    logger = logging.getLogger("obengine")
    for old in [h for h in logger.handlers if isinstance(h, _CliHandler)]:
        logger.removeHandler(old)
    handler = _CliHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


# -- demo ----------------------------------------------------------------------------------


def _time_ns(run: Callable[[], object], repeat: int) -> int:
    """The best of ``repeat`` wall-clock timings of ``run()``, in ns, garbage collector off."""
    best: int | None = None
    enabled = gc.isenabled()
    try:
        for _ in range(repeat):
            gc.collect()
            gc.disable()
            start = time.perf_counter_ns()
            run()
            elapsed = time.perf_counter_ns() - start
            best = elapsed if best is None else min(best, elapsed)
    finally:
        if enabled:
            gc.enable()
    assert best is not None
    return max(best, 1)


def _decimal(units: int, scale: int) -> str:
    """``units`` at ``scale`` as an exact plain decimal string."""
    return f"{Decimal(f'{units}E-{scale}'):f}"  # exact: scaleb would round past 28 digits


def _book_lines(book: Any, depth: int) -> list[str]:
    """A side-by-side table of a book's top ``depth`` levels, exact decimals."""
    ps, amount_scale = book.price_scale, book.amount_scale
    bids, asks = book.top(depth)
    rows: list[tuple[str, str, str, str]] = []
    for i in range(max(len(bids), len(asks))):
        bid_amount = bid_price = ask_price = ask_amount = ""
        if i < len(bids):
            bid_amount = _decimal(int(bids[i][1]), amount_scale)
            bid_price = _decimal(int(bids[i][0]), ps)
        if i < len(asks):
            ask_price = _decimal(int(asks[i][0]), ps)
            ask_amount = _decimal(int(asks[i][1]), amount_scale)
        rows.append((bid_amount, bid_price, ask_price, ask_amount))
    header = ("bid amount", "bid price", "ask price", "ask amount")
    widths = [max([len(header[c])] + [len(r[c]) for r in rows]) for c in range(4)]
    spread, mid = book.spread, book.mid
    title = (
        f"{book.pair}  seq {book.seq}  {len(book.bids)} bids / {len(book.asks)} asks"
        f"  spread {spread if spread is None else format(spread, 'f')}"
        f"  mid {mid if mid is None else format(mid, 'f')}"
    )
    lines = [title]
    for r in [header, *rows]:
        left = f"{r[0]:>{widths[0]}}  {r[1]:>{widths[1]}}"
        right = f"{r[2]:<{widths[2]}}  {r[3]:>{widths[3]}}"
        lines.append(f"  {left}  |  {right}")
    return lines


def _truth_mismatch(book: Any, sim: Any, pair: str) -> str | None:
    """What differs between ``book`` and the simulator's truth for ``pair``, or ``None``. The
    simulated exchange, like the real one, sends a few changes that do not match the book
    (anomalies, see docs/rules.md): the book must count exactly those."""
    if book.anomalies != sim.anomalies(pair):
        return f"{book.anomalies} anomalies, expected {sim.anomalies(pair)}"
    if not book.synced:
        return "book is not synced"
    if book.seq != sim.seq(pair):
        return f"seq {book.seq}, expected {sim.seq(pair)}"
    true_bids, true_asks = sim.levels(pair)
    ps, amount_scale = book.price_scale, book.amount_scale
    for name, view, truth in (("bids", book.bids, true_bids), ("asks", book.asks, true_asks)):
        got = [
            (Decimal(f"{int(p)}E-{ps}"), Decimal(f"{int(a)}E-{amount_scale}")) for p, a in view  # exact
        ]
        if len(got) != len(truth):
            return f"{len(got)} {name}, expected {len(truth)}"
        for i, (g, t) in enumerate(zip(got, truth)):
            if g != t:
                return (
                    f"{name}[{i}] is {g[1]:f} @ {g[0]:f}, expected {t[1]:f} @ {t[0]:f}"
                )
    return None


def _non_negative_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0 (a duration, not a price)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text!r}")
    return value


def _loop(func: Callable[[bytes], object], frames: Iterable[bytes]) -> Callable[[], None]:
    def run() -> None:
        for frame in frames:
            func(frame)

    return run


def _demo(args: argparse.Namespace) -> int:
    from obengine import BookSet, FrameError, Status
    from obengine.simulator import FeedSimulator

    log.info(
        "simulating %d frames for %d pairs (profile %s, seed %d)...",
        args.frames, args.pairs, args.profile, args.seed,
    )
    start = time.perf_counter_ns()
    sim = FeedSimulator.many(args.pairs, seed=args.seed, profile=args.profile)
    frames = sim.frames(args.frames)
    generated_ns = time.perf_counter_ns() - start
    levels = sum(frame.count(b'"P":') for frame in frames)     # snapshot levels and change entries
    size = sum(len(frame) for frame in frames)
    log.debug(
        "generated in %.2f s (%.0f frames/s); %d levels, %.1f MB",
        generated_ns / 1e9, len(frames) / (generated_ns / 1e9), levels, size / 1e6,
    )

    # 1. apply every frame, keeping each status
    books = BookSet(scales=sim.scales)
    statuses: dict[Status, int] = {}
    for index, frame in enumerate(frames):
        try:
            pair, status = books.apply(frame)
        except FrameError as exc:
            log.error("obengine demo: FAILED: frame %d was rejected: %s", index, exc)
            return 1
        statuses[status] = statuses.get(status, 0) + 1
        if pair is not None and pair not in books:
            log.error("obengine demo: FAILED: no book for %s after frame %d", pair, index)
            return 1
    seen = [pair for pair in sim.pairs if pair in books]

    # 2. show a few books
    print(
        f"obengine demo: {len(frames)} frames, {levels} levels (431 entries and 432 changes), "
        f"{len(seen)} books "
        f"(profile {args.profile}, seed {args.seed})"
    )
    for pair in seen[: args.show]:
        print()
        print("\n".join(_book_lines(books[pair], args.depth)))

    # 3. check every book against the truth
    problems: list[str] = []
    not_applied = {s.name: n for s, n in statuses.items() if s != Status.APPLIED}
    if not_applied:
        problems.append(f"not every frame was applied: {not_applied}")
    for pair in books:
        if pair not in sim.scales:
            problems.append(f"{pair}: a book for a pair the simulator never sent")
    for pair in seen:
        mismatch = _truth_mismatch(books[pair], sim, pair)
        if mismatch is not None:
            problems.append(f"{pair}: {mismatch}")
    print()
    if problems:
        for problem in problems[:20]:
            log.error("obengine demo: MISMATCH: %s", problem)
        if len(problems) > 20:
            log.error("obengine demo: ... and %d more", len(problems) - 20)
        log.error(
            "obengine demo: FAILED: %d problem(s); the books differ from the simulator's truth",
            len(problems),
        )
        return 1
    anomalies = sum(books[pair].anomalies for pair in seen)
    print(
        f"check: OK, all {len(seen)} books equal the simulator's truth exactly "
        f"({len(frames)} frames applied, no gap, none crossed; {anomalies} anomalies, as sent)"
    )

    # 4. throughput on the same frames
    log.info("timing (best of %d)...", args.repeat)

    def engine() -> None:
        apply = BookSet(scales=sim.scales).apply
        for frame in frames:
            apply(frame)

    paths: list[tuple[str, Callable[[], object]]] = [
        ("obengine BookSet.apply", engine),
        ("json.loads alone", _loop(json.loads, frames)),
    ]
    try:
        orjson: Any = importlib.import_module("orjson")
    except ImportError:
        log.debug("orjson is not installed: not timed")
    else:
        paths.append(("orjson.loads alone", _loop(orjson.loads, frames)))
    timings = [(name, _time_ns(run, args.repeat)) for name, run in paths]
    engine_ns = timings[0][1]
    print()
    print(f"throughput on the same {len(frames)} frames ({levels} levels), best of "
          f"{args.repeat}:")
    header = ("path", "frames/s", "levels/s", "ns/frame", "engine time / path time")
    rows = [
        (
            name,
            f"{len(frames) / (ns / 1e9):,.0f}",
            f"{levels / (ns / 1e9):,.0f}",
            f"{ns / len(frames):,.0f}",
            "" if i == 0 else f"{engine_ns / ns:.2f}x",
        )
        for i, (name, ns) in enumerate(timings)
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(5)]
    for r in [header, *rows]:
        print(
            f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
            f"{r[3]:>{widths[3]}}  {r[4]:>{widths[4]}}".rstrip()
        )
    floor_name, floor_ns = min(timings[1:], key=lambda timing: timing[1])
    print(
        f"  obengine parses and applies in {engine_ns / floor_ns:.2f}x the time "
        f"{floor_name.split()[0]} takes only to parse"
    )

    # 5. live: the simulated exchange on loopback, recorded, replayed and checked
    if not args.live_seconds:
        log.debug("--live-seconds 0: no live part")
        return 0
    from obengine import _demo as live

    return live.run(args.live_pairs, args.live_seconds, args.seed, args.out, args.repeat)


# -- sim -----------------------------------------------------------------------------------


def _sim(args: argparse.Namespace) -> int:
    import asyncio
    import signal

    from obengine.auth import (
        ENV_BTCTURK_PRIVATE_KEY,
        ENV_BTCTURK_PUBLIC_KEY,
        ENV_KRAKEN_API_KEY,
        ENV_KRAKEN_SECRET,
    )
    from obengine.sim import (
        DEMO_KRAKEN_API_KEY,
        DEMO_KRAKEN_SECRET,
        DEMO_PRIVATE_KEY,
        DEMO_PUBLIC_KEY,
        SimExchange,
    )
    from obengine.sim.http import KRAKEN_TOKEN_PATH

    if args.tick_s < 0:
        log.error("obengine sim: --tick must be >= 0, not %s", args.tick_s)
        return 2
    try:
        import websockets  # noqa: F401  (the websocket feed's server)

        websocket = True
    except ImportError:
        log.warning("obengine sim: no websocket feed (it needs the websockets package)")
        websocket = False
    try:
        sim = SimExchange(
            pairs=args.pairs,
            seed=args.seed,
            host=args.host,
            port=args.port,
            tick_s=args.tick_s or None,
            frames_per_tick=args.frames_per_tick,
            websocket=websocket,
            ws_port=args.ws_port,
        )
    except ValueError as exc:  # a pair whose quote currency cannot be told, ...
        log.error("obengine sim: %s", exc)
        return 2

    async def serve() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError, ValueError):  # not on this platform/thread
                continue
            handled.append(sig)
        try:
            try:
                await sim.start()
            except OSError as exc:
                log.error("obengine sim: cannot listen on %s port %d (websocket %d): %s",
                          args.host, args.port, args.ws_port, exc)
                return 1
            moving = f"advancing every {args.tick_s:g} s" if args.tick_s else "still (--tick 0)"
            first = next(iter(sim.market.pairs.values()))
            lines = [
                f"obengine sim: a simulated BtcTurk exchange, {len(sim.market.pairs)} pairs "
                f"(seed {args.seed}), the market {moving}",
                f"REST API:   {sim.url}",
                *([f"websocket:  {sim.ws_url}  (obdiff, orderbook, trade, ticker; login 114)"]
                  if websocket else []),
                f"graph API:  {sim.graph_url}  (GET /v1/ohlcs?pair={first.normalized})",
                f"Kraken:     {sim.url}{KRAKEN_TOKEN_PATH}",
                "demo credentials of the simulator (they open nothing else):",
                f"{ENV_BTCTURK_PUBLIC_KEY}={DEMO_PUBLIC_KEY}",
                f"{ENV_BTCTURK_PRIVATE_KEY}={DEMO_PRIVATE_KEY}",
                f"{ENV_KRAKEN_API_KEY}={DEMO_KRAKEN_API_KEY}",
                f"{ENV_KRAKEN_SECRET}={DEMO_KRAKEN_SECRET}",
            ]
            print("\n".join(lines), flush=True)
            also = f" and {sim.ws_url}" if websocket else ""
            log.info("serving on %s%s; Ctrl-C stops", sim.url, also)
            try:
                await stop.wait()
            finally:
                await sim.stop()
            log.info("obengine sim: stopped after %d requests", sim.requests)
            return 0
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(serve())
    except KeyboardInterrupt:  # where signal handlers cannot be installed
        return 0
