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
    result = run("demo", "--pairs", "4", "--frames", "600", "--seed", "7", "--repeat", "1")
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
        "--depth", "3", "--repeat", "1", "-q",
    )
    assert result.returncode == 0, result.stderr
    assert "profile hard" in result.stdout
    assert "check: OK" in result.stdout
    assert len(table_rows(result.stdout, "BTCTRY")) == 3
    assert result.stderr == ""  # -q: no progress


def test_demo_verbose_logs_the_generation_speed() -> None:
    result = run("demo", "--pairs", "1", "--frames", "50", "--repeat", "1", "-v")
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
    assert main(["demo", "--pairs", "2", "--frames", "40", "--repeat", "1", "--show", "0"]) == 0
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
