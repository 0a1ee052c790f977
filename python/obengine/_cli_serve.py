"""``obengine serve``: the command line over :class:`obengine.sim.playback.Playback`."""
from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import math
import signal
from typing import Any

from obengine.errors import RecordingError

log = logging.getLogger("obengine.serve")

EXIT_OK, EXIT_LISTEN, EXIT_USAGE, EXIT_NOT_RECORDING = 0, 1, 2, 3

DESCRIPTION = """\
Serve a recording (obengine record) as BtcTurk's websocket feed on loopback, so that a strategy
can be tested offline against real data: the same server as obengine sim's websocket side
(hello, 151 joins and leaves, 100 answers, keepalive), with the recording as its source. Plays
at the recorded pace, a multiple of it, or as fast as the clients take it, starting at the first
join. Prints the URL, the pairs and their scales on stdout; Ctrl-C or SIGTERM stops it.
"""

EPILOG = """\
what a client gets:
  obdiff:PAIR   the 100 answer, a 431 of the book at the playback position (CS = its CS), then
                the recorded 431s and 432s of the pair, byte for byte, with their recorded CS
                (gaps and resyncs included, so a client resyncs as it would have live); a pair
                not synced at the join gets the recording's next 431 of it
  trade:PAIR    a 421 of the last 50 trades played, then the recorded 422s
  ticker:...    the last recorded 401/402, then the recorded ones
  The recorder's own hello, subscription and login results, account messages and events are
  not sent. The playback position is shared by every connection (one market).

stdout:
  ws://HOST:PORT                    the websocket URL, alone on the first line
  pairs: BTCTRY,ETHTRY              the pairs served
  scales: {"BTCTRY": [0, 8], ...}   the recording's scales, as JSON, for
                                    obengine.connect(pairs, url=URL, scales=...)

At the end of the recording the server logs "end of recording" and stays up, connections open
and idle (a new join gets the final books) until SIGINT or SIGTERM. There is no loop: starting
over would move every book back in time.

exit status:
  0  stopped by SIGINT or SIGTERM
  1  cannot listen on HOST:PORT
  2  bad usage, or a PATH that matches no file
  3  a PATH that is not a recording, cannot be read, or is of a newer format version

example:
  obengine record --pairs BTCTRY,ETHTRY --out rec/ --duration 1h
  obengine serve rec/ --speed 10
"""


def _speed(text: str) -> float:
    """An argparse type: a speed factor >= 0 (``10`` or ``10x``)."""
    value = text.strip().lower().removesuffix("x")
    try:
        speed = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a speed factor: {text!r} (examples: 1, 10, 0.5, 0)") from None
    if not math.isfinite(speed) or speed < 0:
        raise argparse.ArgumentTypeError(f"a speed factor is >= 0, not {text!r}")
    return speed


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r} (0..65535; 0: any free port)")
    return int(text)


def _pairs(text: str) -> list[str]:
    names = [name.strip().upper().replace("_", "") for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma list of pairs such as BTCTRY,ETHTRY")
    return names


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Add ``serve`` to the ``obengine`` command's subparsers."""
    p = commands.add_parser(
        "serve",
        parents=parents,
        help="play a recording back as an exchange-compatible websocket feed on loopback",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="segment files, directories of segments, or glob patterns (quote them); "
                        "played in the order of the segments' start times")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=_port, default=0,
                   help="port to listen on (default: 0, a free port, printed)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=_speed, default=1.0, metavar="FACTOR",
                      help="1: the recorded pace (default); 10: ten times faster; 0: as fast as "
                           "the clients take it (backpressure: the playback waits for the "
                           "slowest connection)")
    pace.add_argument("--as-fast-as-possible", action="store_const", const=0.0, dest="speed",
                      help="the same as --speed 0")
    p.add_argument("--pairs", type=_pairs, default=None, metavar="PAIRS",
                   help="serve only these pairs of the recording, a comma list such as "
                        "BTCTRY,ETHTRY (default: all; others are answered ok and then get nothing)")
    p.add_argument("--no-wait", action="store_true",
                   help="start playing at once, not at the first join of a served pair")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:  # where signal handlers cannot be installed
        return EXIT_OK


def _pace(speed: float) -> str:
    if speed == 0:
        return "as fast as the clients take it"
    return "at the recorded pace" if speed == 1 else f"at {speed:g} times the recorded pace"


async def _run(args: argparse.Namespace) -> int:
    from obengine.sim.playback import Playback

    try:
        playback = Playback(
            args.paths, speed=args.speed, pairs=args.pairs, wait_for_join=not args.no_wait,
            host=args.host, port=args.port,
        )
    except RecordingError as exc:
        log.error("obengine serve: %s", exc)
        return EXIT_USAGE if exc.errno == errno.ENOENT else EXIT_NOT_RECORDING
    except ValueError as exc:
        log.error("obengine serve: %s", exc)
        return EXIT_USAGE
    source = playback.source
    if args.pairs is not None and source.known_pairs:
        missing = [p for p in args.pairs if p not in source.known_pairs]
        if missing:
            log.error("obengine serve: not in the recording: %s (it has %s)",
                      ",".join(missing), ",".join(source.known_pairs))
            return EXIT_USAGE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _stopping, stop, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not on this platform/thread
            continue
        handled.append(sig)
    try:
        try:
            await playback.start()
        except OSError as exc:
            log.error("obengine serve: cannot listen on %s port %d: %s", args.host, args.port, exc)
            return EXIT_LISTEN
        pairs = playback.pairs
        scales = {pair: list(s) for pair, s in playback.scales.items()}
        print(playback.url, f"pairs: {','.join(pairs) if pairs else '(not named by the recording)'}",
              f"scales: {json.dumps(scales)}", sep="\n", flush=True)
        start = "now" if args.no_wait else "at the first join"
        log.info("obengine serve: %d segments, %d pairs, %s, starting %s; Ctrl-C stops",
                 len(source.paths), len(pairs), _pace(args.speed), start)
        if not source.headers:
            log.warning("obengine serve: the recording has no HEADER: its pairs and scales are "
                        "unknown (clients use the bundled scales); every pair is served")
        try:
            await stop.wait()
        finally:
            await playback.stop()
        log.info("obengine serve: stopped after %d frames played", playback.frames_played)
        return EXIT_OK
    finally:
        for sig in handled:
            loop.remove_signal_handler(sig)


def _stopping(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s: stopping", sig.name)
    stop.set()
