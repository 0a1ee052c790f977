"""The ``obengine`` command line, run as a real subprocess (``python -m obengine``) and in
process through ``obengine.cli.main``."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import obengine
from obengine import Book, BookSet, Status
from obengine.cli import _truth_mismatch, main
from obengine.simulator import FeedSimulator

# the directory that holds the obengine package actually imported here, so that the subprocess
# runs the same code whether or not the project is installed
PACKAGE_ROOT = str(Path(obengine.__file__).resolve().parent.parent)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "obengine", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def table_rows(stdout: str, pair: str) -> list[list[str]]:
    """The level rows printed under a book's title: ``[bid amount, bid price, ask price,
    ask amount]``."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{pair}  seq "))
    rows = []
    for line in lines[start + 2 :]:
        if "|" not in line:
            break
        left, right = line.split("|")
        rows.append(left.split() + right.split())
    return rows


def test_demo_runs_checks_the_books_and_prints_them_with_throughput() -> None:
    result = run("demo", "--pairs", "4", "--frames", "600", "--seed", "7", "--repeat", "1",
                 "--live-seconds", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "600 frames" in out
    assert "check: OK, all 4 books equal the simulator's truth exactly" in out
    # the top 5 levels of the first two books, exact decimals from the simulator's truth
    sim = FeedSimulator.many(4, seed=7)
    frames = sim.frames(600)
    levels = sum(frame.count(b'"P":') for frame in frames)   # every snapshot level and change entry
    assert f"obengine demo: 600 frames, {levels} levels (431 entries and 432 changes), 4 books" in out
    for pair in ("BTCTRY", "ETHTRY"):
        bids, asks = sim.levels(pair)
        rows = table_rows(out, pair)
        assert len(rows) == 5
        for row, (bid, ask) in zip(rows, zip(bids, asks)):
            assert [Decimal(x) for x in row] == [bid[1], bid[0], ask[0], ask[1]]
        assert f"{pair}  seq {sim.seq(pair)}  100 bids / 100 asks" in out
    assert "LTCTRY  seq" not in out  # --show defaults to 2 books
    # throughput: the engine and json.loads on the same frames
    assert "frames/s" in out and "levels/s" in out and "ns/frame" in out
    assert "obengine parses and applies in" in out
    assert re.search(r"^  obengine BookSet\.apply +[\d,]+ +[\d,]+ +[\d,]+", out, re.M)
    assert re.search(r"^  json\.loads alone +[\d,]+ +[\d,]+ +[\d,]+ +[\d.]+x$", out, re.M)
    # progress on stderr, short
    assert "simulating 600 frames for 4 pairs" in result.stderr
    assert len(result.stderr.splitlines()) <= 5


def test_demo_hard_profile_many_pairs() -> None:
    result = run(
        "demo", "--pairs", "60", "--frames", "300", "--profile", "hard", "--show", "1",
        "--depth", "3", "--repeat", "1", "-q", "--live-seconds", "0",
    )
    assert result.returncode == 0, result.stderr
    assert "profile hard" in result.stdout
    assert "check: OK" in result.stdout
    assert len(table_rows(result.stdout, "BTCTRY")) == 3
    assert result.stderr == ""  # -q: no progress


def test_demo_verbose_logs_the_generation_speed() -> None:
    result = run("demo", "--pairs", "1", "--frames", "50", "--repeat", "1", "-v", "--live-seconds", "0")
    assert result.returncode == 0, result.stderr
    assert "generated in" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--frames", "0"],
        ["demo", "--frames", "many"],
        ["demo", "--pairs", "-3"],
        ["demo", "--profile", "calm"],
        ["demo", "--no-such-option"],
        ["demo", "--live-seconds", "-1"],
        ["demo", "--live-seconds", "nan"],
        ["demo", "--live-seconds", "soon"],
        ["demo", "--live-pairs", "0"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2_with_usage(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage: obengine" in result.stderr
    assert result.stdout == ""


def test_no_command_exits_2_with_usage() -> None:
    result = run()
    assert result.returncode == 2
    assert "usage: obengine" in result.stderr and "command is required" in result.stderr


def test_help_lists_the_demo() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "demo" in result.stdout


def test_main_in_process_returns_the_exit_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--pairs", "2", "--frames", "40", "--repeat", "1", "--show", "0",
                 "--live-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "check: OK, all 2 books" in out and "seq" not in out.split("check:")[0]
    assert main(["demo", "--frames", "-1"]) == 2
    assert "usage: obengine" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert obengine.__version__ in capsys.readouterr().out


def test_the_demo_check_reports_a_book_that_differs_from_the_truth() -> None:
    sim = FeedSimulator(["XRPTRY"], seed=4, spelling="fixed", anomalies=False)  # no fine amounts
    books = BookSet(scales=sim.scales)
    for frame in sim.frames(20):
        assert books.apply(frame)[1] == Status.APPLIED
    assert _truth_mismatch(books["XRPTRY"], sim, "XRPTRY") is None
    # a book at the same CS whose best ask has another amount
    price, amount = sim.levels("XRPTRY")[1][0]
    snapshot = sim.snapshot("XRPTRY").decode()
    wrong = f'"A":"{amount + Decimal("0.0001"):f}","P":"{price:f}"'
    right = f'"A":"{amount:f}","P":"{price:f}"'
    assert snapshot.count(right) == 1
    book = Book("XRPTRY", *sim.scales["XRPTRY"])
    assert book.apply(snapshot.replace(right, wrong)) == Status.APPLIED
    assert _truth_mismatch(book, sim, "XRPTRY") == (
        f"asks[0] is {amount + Decimal('0.0001'):f} @ {price:f}, expected {amount:f} @ {price:f}"
    )
    # and one CS behind
    assert books.apply(sim.frames(1)[0])[1] == Status.APPLIED
    assert _truth_mismatch(book, sim, "XRPTRY") == (
        f"seq {sim.seq('XRPTRY') - 1}, expected {sim.seq('XRPTRY')}"
    )


# -- the live part: the simulated exchange recorded, replayed and checked ----------------------


def synced_lines(stdout: str) -> dict[str, tuple[Decimal, Decimal]]:
    """The live view's last lines (not a terminal: plain lines), ``synced  PAIR  bid B  ask A
    spread S``: pair -> (best bid, best ask)."""
    found = {}
    for line in stdout.splitlines():
        m = re.fullmatch(r"\s+synced\s+(\w+)\s+bid\s+(\S+)\s+ask\s+(\S+)\s+spread\s+(\S+)", line)
        if m:
            bid, ask, spread = (Decimal(x) for x in m.group(2, 3, 4))
            assert spread == ask - bid
            found[m.group(1)] = (bid, ask)
    return found


def test_demo_live_part_records_the_simulated_exchange_and_replays_it_exactly(tmp_path: Path) -> None:
    from obengine.replay import books as replayed_books

    out = tmp_path / "recording"
    result = run("demo", "--pairs", "2", "--frames", "100", "--repeat", "1", "--show", "0",
                 "--live-seconds", "2", "--live-pairs", "3", "--seed", "5", "--out", str(out))
    assert result.returncode == 0, result.stderr
    stdout = result.stdout
    assert re.search(r"^live: obengine sim on ws://127\.0\.0\.1:\d+, 3 pairs \(BTCTRY, ETHTRY, LTCTRY\), "
                     r"seed 5$", stdout, re.M), stdout
    assert re.search(r"^live: recorded [\d,]+ frames in [\d.]+ s \([\d,]+ frames/s", stdout, re.M)
    m = re.search(r"^live: (\d+) segments?, .* on disk for .* raw \(compression [\d.]+x\), in (.+)$", stdout, re.M)
    assert m and m.group(2) == str(out), stdout
    assert re.search(r"the feed saw [1-9]\d* gaps?, [1-9]\d* malformed frames?, [1-9]\d* resyncs?", stdout)
    assert "check: OK, all 3 live books equal the simulator's truth exactly" in stdout
    assert re.search(r"^replay: [\d,]+ frames in [\d.,]+ ms \([\d,]+ frames/s", stdout, re.M)
    assert "check: OK, all 3 replayed books equal the live ones exactly (seq, every level, scales)" in stdout
    # what the view showed last is the live books at the end, which the recording replays to
    segments = sorted(out.glob("*.obr"))
    assert len(segments) == int(m.group(1)) >= 1
    books = replayed_books(out)
    shown = synced_lines(stdout)
    assert sorted(books) == sorted(shown) == ["BTCTRY", "ETHTRY", "LTCTRY"]
    for pair, book in books.items():
        assert book.synced and len(book.bids) and len(book.asks), pair
        assert book.best_bid is not None and book.best_ask is not None
        bid = Decimal(f"{book.best_bid[0]}E-{book.price_scale}")
        ask = Decimal(f"{book.best_ask[0]}E-{book.price_scale}")
        assert (bid, ask) == shown[pair], pair
    assert "injecting a fault: a dropped frame on ETHTRY" in result.stderr
    assert "injecting a fault: a truncated frame on LTCTRY" in result.stderr


def test_demo_live_seconds_0_skips_the_live_part(tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = run("demo", "--pairs", "2", "--frames", "50", "--repeat", "1", "--live-seconds", "0",
                 "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "check: OK, all 2 books" in result.stdout
    assert "live:" not in result.stdout and "replay" not in result.stdout
    assert "live:" not in result.stderr
    assert not out.exists()


def test_demo_live_out_that_holds_a_recording_or_cannot_be_made_exits_2(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "obengine-old.obr").write_bytes(b"")
    result = run("demo", "--pairs", "1", "--frames", "20", "--repeat", "1", "--out", str(used))
    assert result.returncode == 2
    assert "already holds a recording" in result.stderr and str(used) in result.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("demo", "--pairs", "1", "--frames", "20", "--repeat", "1", "--out", str(blocker / "rec"))
    assert result.returncode == 2
    assert "cannot create the directory" in result.stderr


def test_demo_live_part_exits_1_naming_the_pair_when_the_replay_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    import obengine.replay

    real = obengine.replay.replay

    def first_segment_only(paths: Path, **kwargs: object) -> obengine.replay.Replay:
        # a replay that stops early: its books are older than the live ones
        return real(sorted(Path(paths).glob("*.obr"))[:1], **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(obengine.replay, "replay", first_segment_only)
    code = main(["demo", "--pairs", "1", "--frames", "20", "--repeat", "1", "--show", "0",
                 "--live-seconds", "1.5", "--live-pairs", "2", "--out", str(tmp_path / "rec")])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "check: OK, all 2 live books equal the simulator's truth exactly" in captured.out
    assert re.search(r"^replay: [\d,]+ frames in", captured.out, re.M)
    assert "replayed books equal" not in captured.out
    assert re.search(r"MISMATCH: (BTCTRY|ETHTRY): the replayed book differs from the live one: seq -?\d+ "
                     r"replayed, -?\d+ live", captured.err), captured.err
    assert "FAILED" in captured.err


def test_the_live_check_names_what_differs_between_replayed_and_live_books() -> None:
    from obengine._demo import book_mismatch

    sim = FeedSimulator(["XRPTRY"], seed=4, spelling="fixed", anomalies=False)
    book = Book("XRPTRY", *sim.scales["XRPTRY"])
    for frame in sim.frames(10):
        book.apply(frame)
    live = book.snapshot()
    assert book_mismatch(book.snapshot(), live) is None
    other = book.snapshot()
    other["asks"] = [*other["asks"][:2], (other["asks"][2][0], "0.5"), *other["asks"][3:]]
    assert book_mismatch(other, live) == (
        f"asks[2] is 0.5 @ {live['asks'][2][0]} replayed, {live['asks'][2][1]} @ {live['asks'][2][0]} live"
    )
    other = book.snapshot()
    other["bids"] = other["bids"][:-1]
    assert book_mismatch(other, live) == f"{len(live['bids']) - 1} bids replayed, {len(live['bids'])} live"
    other = book.snapshot()
    other["amount_scale"] += 1
    assert book_mismatch(other, live) == (
        f"amount_scale {live['amount_scale'] + 1} replayed, {live['amount_scale']} live"
    )
