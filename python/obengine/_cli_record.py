"""``obengine record``: the command line over :class:`obengine.recorder.Recorder`."""
from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import sys
from typing import Any

from obengine.errors import AuthError, ObengineError, RecordingError

log = logging.getLogger("obengine.record")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_START, EXIT_WRITE, EXIT_AUTH = 0, 1, 2, 3, 4, 5

EPILOG = """\
exit status:
  0  stopped cleanly: SIGINT or SIGTERM, or --duration reached (every block flushed)
  1  an unexpected error (a bug: please report it with the log)
  2  bad usage
  3  could not start: the output directory cannot be created, the pair list could not be
     fetched (--pairs all), or the URL is not a websocket URL
  4  a write error (disk full, the file size limit, an I/O error): the message names the
     file; every block written before it stays readable
  5  the exchange refused the login

A 'kill -9' loses at most the block being filled (--block, 1 s by default). Run it under a
supervisor for weeks (the README shows a systemd unit); --metrics serves Prometheus metrics
and /healthz, which answers 503 when no frame arrived for --stale-after.
"""

_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_UNITS_B = {"b": 1, "k": 1000, "kb": 1000, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
            "g": 10**9, "gb": 10**9, "gib": 2**30}


def duration_s(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``500ms`` as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*", text.lower())
    if not m or float(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a positive duration: {text!r} (examples: 30s, 15m, 2h, 1d)")
    return float(m.group(1)) * _UNITS_S[m.group(2) or "s"]


def _size_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([a-z]+)\s*", text.lower())
    if not m or m.group(2) not in _UNITS_B or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 256MiB, 1GB)")
    return int(m.group(1)) * _UNITS_B[m.group(2)]


def rotate_spec(text: str) -> tuple[float | None, int | None]:
    """``1h``, ``256MiB`` or ``1h,256MiB``: a new segment by age, by size, or whichever first."""
    age: float | None = None
    size: int | None = None
    for part in text.split(","):
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*(ms|s|m|min|h|d)?\s*", part.lower()):
            age = duration_s(part)
        else:
            size = _size_bytes(part)
    return age, size


def host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r} (example: 127.0.0.1:9464)")
    return host or "127.0.0.1", int(port)


def register(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    from obengine.feed import BTCTURK_WS

    p = commands.add_parser(
        "record",
        parents=parents,
        help="record the websocket feed byte for byte into compressed, crash-safe segment files",
        description=(
            "Connect to the feed, keep every pair's book exact (re-joining after gaps, "
            "reconnecting after drops) and write every message received, byte for byte, with "
            "its receive times, and the recorder's own events, into zstd-compressed segment "
            "files (docs/recording.md). Each segment starts with the exact books of the synced "
            "pairs, so any segment replays on its own (obengine replay). Logs a health line "
            "periodically; on a terminal, shows a live view."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pairs", required=True, metavar="PAIRS|all",
                   help="comma list such as BTCTRY,ETHTRY (no REST call needed: works with any "
                        "compatible feed: obengine sim, obengine serve), or 'all' for every pair "
                        "of the exchange's REST exchange info")
    p.add_argument("--out", required=True, metavar="DIR", help="the recording's directory (created if missing)")
    p.add_argument("--url", default=BTCTURK_WS, help=f"websocket feed (default: {BTCTURK_WS})")
    p.add_argument("--rest-url", default=None, metavar="URL",
                   help="REST API for --pairs all and the pairs' scales (default: the real "
                        "exchange's when --url is the real feed; else none: bundled scales)")
    p.add_argument("--channels", default="obdiff", metavar="LIST",
                   help="comma list of obdiff, trade, ticker (default: obdiff)")
    p.add_argument("--duration", type=duration_s, default=None, metavar="TIME",
                   help="stop after TIME (30s, 15m, 2h, 1d; default: until SIGINT or SIGTERM)")
    p.add_argument("--rotate", type=rotate_spec, default=(3600.0, 256 * 2**20), metavar="TIME[,SIZE]",
                   help="start a new segment after TIME or SIZE, whichever first (default: 1h,256MiB)")
    p.add_argument("--block", type=duration_s, default=1.0, metavar="TIME",
                   help="write a block at least this often: the most a kill -9 can lose (default: 1s)")
    p.add_argument("--no-fsync", action="store_true",
                   help="do not fsync each block (a killed process still loses nothing more; a "
                        "power loss may)")
    p.add_argument("--prefix", default="obengine", help="segment file name prefix (default: obengine)")
    p.add_argument("--health-every", type=duration_s, default=60.0, metavar="TIME",
                   help="log a health line this often (default: 60s)")
    p.add_argument("--metrics", type=host_port, default=None, metavar="HOST:PORT",
                   help="serve Prometheus metrics on /metrics and a health check on /healthz")
    p.add_argument("--stale-after", type=duration_s, default=60.0, metavar="TIME",
                   help="/healthz answers 503 when no frame came for this long (default: 60s)")
    p.add_argument("--live", choices=("auto", "on", "off"), default="auto",
                   help="live view on stderr: auto shows it when stderr is a terminal (default)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # past the file size limit: EFBIG, not death
    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:                       # a second Ctrl-C while closing
        return EXIT_OK


async def _pairs(args: argparse.Namespace) -> list[str] | None:
    if args.pairs.strip().lower() != "all":
        pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
        return pairs or None
    from obengine.feed import BTCTURK_WS
    from obengine.rest import RestClient

    rest_url = args.rest_url or ("https://api.btcturk.com" if args.url.rstrip("/") == BTCTURK_WS else None)
    if rest_url is None:
        log.error("--pairs all needs the exchange info of a REST API: give --rest-url")
        return None
    try:
        async with RestClient(rest_url, rest_url) as rest:
            info = await rest.exchange_info()
    except ObengineError as exc:
        log.error("cannot fetch the pair list from %s: %s", rest_url, exc)
        return None
    return sorted(name for name, pair in info.pairs.items() if pair.status.upper() == "TRADING")


async def _run(args: argparse.Namespace) -> int:
    from obengine._wsconn import InvalidURL
    from obengine.recorder import Recorder

    pairs = await _pairs(args)
    if not pairs:
        log.error("no pairs to record")
        return EXIT_START
    channels = [c.strip() for c in args.channels.split(",") if c.strip()]
    unknown = sorted(set(channels) - {"obdiff", "trade", "ticker"})
    if unknown or "obdiff" not in channels:
        log.error("--channels: obdiff, and optionally trade and ticker (got %s)", args.channels)
        return EXIT_USAGE
    rotate_s, rotate_bytes = args.rotate
    try:
        recorder = Recorder(
            pairs, args.out, url=args.url, channels=channels, rest_url=args.rest_url, prefix=args.prefix,
            rotate_s=rotate_s or 10 * 365 * 86400.0, rotate_bytes=rotate_bytes or 2**62,
            block_s=args.block, fsync=not args.no_fsync, health_s=args.health_every,
        )
    except ValueError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopping, stop, sig)
    metrics = None
    live = None
    try:
        if args.metrics is not None:
            from obengine._metrics import MetricsServer

            try:
                host, port = args.metrics
                metrics = MetricsServer(host, port, recorder.health, stale_after_s=args.stale_after)
            except OSError as exc:
                log.error("cannot serve metrics on %s:%d: %s", *args.metrics, exc)
                return EXIT_START
            log.info("metrics on http://%s:%d/metrics, health on /healthz", args.metrics[0], metrics.port)
        if args.live == "on" or (args.live == "auto" and sys.stderr.isatty()):
            live = asyncio.create_task(_live_view(recorder))
        await recorder.run(duration_s=args.duration, stop=stop)
    except RecordingError as exc:
        log.error("write error, recording stopped: %s", exc)
        return EXIT_WRITE if recorder.recording is not None else EXIT_START
    except AuthError as exc:
        log.error("%s", exc)
        return EXIT_AUTH
    except InvalidURL as exc:
        log.error("%s", exc)
        return EXIT_START
    finally:
        if live is not None:
            live.cancel()
        if metrics is not None:
            metrics.close()
    return EXIT_OK


def _stopping(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s: flushing and closing", sig.name)
    stop.set()


async def _live_view(recorder: Any) -> None:
    """A live view on stderr (rich): the health figures and the top of book of a few pairs."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    def render() -> Table:
        h = recorder.health(top_pairs=8)
        table = Table(title=f"obengine record -> {recorder.out}", show_header=True, expand=False)
        table.add_column("pair")
        table.add_column("best bid", justify="right")
        table.add_column("best ask", justify="right")
        for pair, (bid, ask) in h.top.items():
            table.add_row(pair, bid or "-", ask or "-")
        table.caption = h.line()
        return table

    with Live(render(), console=Console(stderr=True), refresh_per_second=2, transient=True) as live:
        while True:
            await asyncio.sleep(0.5)
            live.update(render())
