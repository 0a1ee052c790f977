"""Defects that coverage-guided fuzzing, a re-entrancy probe and real captured frames found in the
native core (issue 9), and later runs of the fuzz harness (fuzz/). Each test failed before its
fix. Most are core only (the reference model has no scratch area, no index and no byte offsets);
those that take ``book_class`` run on both.
"""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from obengine import Book, BookSet, FrameError, Status

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


# --- a finalizer that adds the same new pair while its book is being made ----------------------


@pytest.mark.parametrize("keep_nested_book", [True, False])
def test_a_finalizer_that_creates_the_same_pair_during_its_creation_leaves_one_book_that_routes(
    keep_nested_book: bool,
) -> None:
    """Making the Book for a new pair may run the garbage collector, and a finalizer may apply a
    frame of the same new pair to the same BookSet. Before the fix the outer call's book replaced
    the nested one in the mapping while the routing index still pointed at the nested one: frames
    went to a book the set no longer showed (when the finalizer kept it alive) or to freed memory
    (when nothing did: a use-after-free, which the sanitizer run reports). Now the outer frame goes
    to the book the nested call made, and there is one book, the one frames route to.

    Run in a child process, so that memory corruption fails this test instead of the whole run."""
    program = textwrap.dedent(
        """
        import gc, sys
        sys.path.insert(0, sys.argv[1])
        keep_nested_book = sys.argv[2] == "1"
        from helpers import f431, f432, levels
        from obengine import BookSet

        books = BookSet()
        outer_frame = f431(5, asks=[("2150010", "0.5")], bids=[("2150000", "2")])
        nested_frame = f431(9, asks=[("2150030", "1")], bids=[("2149990", "3")])
        nested = []
        nested_books = []
        outer_running = []

        class AppliesInItsFinalizer:
            def __init__(self):
                self.me = self          # a reference cycle: freed by the collector, which runs __del__

            def __del__(self):
                nested.append((bool(outer_running), books.apply(nested_frame)[1].name))
                if keep_nested_book:
                    nested_books.append(books["BTCTRY"])

        gc.collect()
        AppliesInItsFinalizer()
        gc.set_threshold(1)
        try:
            outer_running.append(True)
            outer = books.apply(outer_frame)[1].name
            outer_running.clear()
        finally:
            gc.set_threshold(700)
        gc.collect()
        same = [book is books["BTCTRY"] for book in nested_books]
        after = [books.apply(f432(6, asks=[("2150010", "0.7", 0)]))[1].name]
        for cs in range(7, 300):        # freed memory gets reused by now
            after.append(books.apply(f432(cs, asks=[("2150010", str(cs), 0)]))[1].name)
        book = books["BTCTRY"]
        print(repr((nested, outer, same, sorted(set(after)), levels(book), book.seq, len(books))))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", program, str(TESTS), "1" if keep_nested_book else "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    nested, outer, same, after, book_levels, seq, count = ast.literal_eval(result.stdout.strip())
    # the nested apply ran inside the outer one, while the outer one was making the book
    assert nested == [(True, "APPLIED")], nested
    assert outer == "APPLIED"
    assert same == ([True] if keep_nested_book else [])
    # the outer 431 (CS 5) was applied last, to the one book; the 432s that follow apply to it
    assert after == ["APPLIED"]
    assert (book_levels, seq, count) == (([(2150000, 200000000)], [(2150010, 29900000000)]), 299, 1)


# --- FrameError.offset and .pair --------------------------------------------------------------


@pytest.mark.parametrize("key", ["PS", "event"])
def test_the_offset_of_an_escaped_pair_naming_another_pair_is_where_the_name_is(key: str) -> None:
    frame = b'[431,{"CS":1,"%s":"\\u0059"}]' % key.encode()
    with pytest.raises(FrameError) as info:
        Book("X", 0, 0).apply(frame)
    name_at = frame.index(b'"\\u0059"')
    assert info.value.offset == name_at, (info.value.offset, name_at)
    assert "'Y'" in str(info.value) and "X" in str(info.value)


def test_the_offset_of_a_lone_surrogate_in_a_str_frame_is_its_utf8_byte_offset() -> None:
    frame = '[432,{"PS":"\u00e9\udc80"}]'
    with pytest.raises(FrameError) as info:
        Book("BTCTRY", 0, 8).apply(frame)
    # '[432,{"PS":"' is 12 bytes and the e-acute 2 more: the surrogate starts at byte 14
    assert info.value.offset == 14
    assert info.value.offset == len(frame[: frame.index("\udc80")].encode("utf-8"))


CUT_REAL_431 = (
    b'[431,{"CS":1750,"PS":"DOTTRY","AO":[{"A":"12.34","P":"245.6"},{"A":"1.5","P":"245.7"}],'
    b'"BO":[{"A":"3","P":"245.5"}],"channel":"obdiff","event":"DOTTRY","type":431}]'
)


@pytest.mark.parametrize("cut", [31, 40, 60, 100, len(CUT_REAL_431) - 1])
def test_a_bookset_names_the_pair_of_a_malformed_frame_once_ps_was_read(cut: int) -> None:
    with pytest.raises(FrameError) as info:
        BookSet().apply(CUT_REAL_431[:cut])
    assert info.value.pair == "DOTTRY" and "DOTTRY" in str(info.value)
    assert info.value.cs == 1750


def test_a_bookset_names_the_pair_from_event_when_ps_is_null() -> None:
    frame = b'[432,{"CS":7,"PS":null,"event":"ETHTRY","AO":[{"CP":0,"P":"x","A":"1"}],"BO":[]}]'
    with pytest.raises(FrameError) as info:
        BookSet().apply(frame)
    assert info.value.pair == "ETHTRY"


def test_a_bookset_names_ps_over_an_event_read_before_it() -> None:
    frame = b'[432,{"CS":7,"event":"ETHTRY","PS":"BTCTRY","AO":[{"CP":9,"P":"1","A":"1"}],"BO":[]}]'
    with pytest.raises(FrameError) as info:
        BookSet().apply(frame)
    assert info.value.pair == "BTCTRY"


def test_a_bookset_names_no_pair_when_the_name_is_not_a_valid_pair() -> None:
    frame = b'[432,{"CS":7,"PS":"","AO":[{"CP":9,"P":"1","A":"1"}],"BO":[]}]'
    with pytest.raises(FrameError) as info:
        BookSet().apply(frame)
    assert info.value.pair is None


# --- the debug build really checks signed overflow --------------------------------------------


def _debug_compile_args() -> list[str]:
    """setup.py's DEBUG_COMPILE_ARGS, read from its source (importing setup.py would build)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DEBUG_COMPILE_ARGS" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise AssertionError("setup.py defines no DEBUG_COMPILE_ARGS")


OVERFLOW_PROBE = r"""
#include <stdint.h>
#include <stdio.h>
int main(void) {
    volatile int64_t big = INT64_MAX, one = 1;
    int64_t sum = big + one;                /* signed overflow: undefined behaviour */
    printf("no report: %lld\n", (long long)sum);
    return 0;
}
"""


@pytest.mark.skipif(shutil.which(sysconfig.get_config_var("CC").split()[0]) is None, reason="no C compiler")
@pytest.mark.parametrize("with_setup_flags", [True, False])
def test_the_debug_build_flags_stop_on_signed_overflow_despite_pythons_fwrapv(
    tmp_path: Path, with_setup_flags: bool
) -> None:
    """Extensions are compiled with Python's own CFLAGS first, which hold -fwrapv: that defines
    signed overflow as wrapping, and so turns UBSan's overflow check off. The debug build's flags
    come after them and must turn it back on. This compiles a deliberate overflow the way an
    extension is compiled (Python's CFLAGS, then setup.py's debug flags) and runs it; without
    setup.py's -fno-wrapv the same program runs to the end unreported."""
    cc = sysconfig.get_config_var("CC").split()
    cflags = sysconfig.get_config_var("CFLAGS").split()
    if "-fwrapv" not in cflags:
        pytest.skip("this Python's CFLAGS do not define signed overflow")
    debug = _debug_compile_args()
    assert "-fno-wrapv" in debug and any("undefined" in flag for flag in debug)
    if not with_setup_flags:
        debug = [flag for flag in debug if flag != "-fno-wrapv"]
    source = tmp_path / "overflow.c"
    source.write_text(OVERFLOW_PROBE)
    program = tmp_path / "overflow"
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run([*cc, *cflags, *debug, str(source), "-o", str(program)], check=True, env=env)
    result = subprocess.run([str(program)], capture_output=True, text=True, env=env, timeout=60)
    if with_setup_flags:
        assert result.returncode != 0 and "signed integer overflow" in result.stderr, result
        assert "no report" not in result.stdout
    else:
        assert result.returncode == 0 and "no report" in result.stdout, result


# --- found by the fuzz harness (fuzz/), against the reference model -------------------------


@pytest.mark.parametrize(
    "frame",
    [
        b'[431,{"CS":1,"PS":"BTCTRY","x\\ud800":1}]',
        b'[431,{"CS":1,"PS":"BTCTRY","AO":[{"P":"1","A":"1","\\udc00":0}]}]',
        b'[432,{"CS":1,"PS":"BTCTRY","\\udc00\\ud800":{"a":[1]},"AO":[]}]',
    ],
    ids=["payload-key", "level-key", "two-lone-halves"],
)
def test_a_key_with_an_escaped_lone_surrogate_is_an_unknown_key_and_skipped(book_class: type, frame: bytes) -> None:
    """docs/rules.md: keys are matched after unescaping and unknown keys are skipped. A key with
    a lone surrogate escape is valid JSON and matches no known key; the core used to raise."""
    book = book_class("BTCTRY", 0, 8)
    assert book.apply(frame) in (Status.APPLIED, Status.GAP)
    assert book.apply(frame.decode()) in (Status.APPLIED, Status.GAP)


@pytest.mark.parametrize("key", ["PS", "event"])
def test_a_pair_name_with_an_escaped_lone_surrogate_is_still_an_error(book_class: type, key: str) -> None:
    frame = b'[431,{"CS":1,"%s":"BTC\\ud800"}]' % key.encode()
    with pytest.raises(FrameError):
        book_class("BTCTRY", 0, 8).apply(frame)


@pytest.mark.parametrize(
    "frame",
    [
        b'[431,{"CS":1,"PS":"BTCTRY","AO":[],"BO":[],"event":"BT\\ud800C"}]',
        b'[431,{"CS":1,"event":"BT\\udc00C","PS":"BTCTRY"}]',
        b'[431,{"CS":1,"PS":"BTCTRY","AO":[{"A":"1","P":"2"}],"BO":[],"channel":"obdiff",'
        b'"event":"XR\\ud800PBTC","type":431}]',
    ],
)
def test_a_lone_surrogate_in_event_is_no_error_when_ps_names_the_pair(book_class: type, frame: bytes) -> None:
    """Found by the clang fuzzing run (the exchange's layout but an escaped event): the pair is
    PS when it is a string, so event only has to be a string; the core used to raise."""
    assert book_class("BTCTRY", 0, 8).apply(frame) == Status.APPLIED


def test_a_lone_surrogate_in_event_naming_the_pair_is_placed_at_the_escape() -> None:
    with pytest.raises(FrameError) as info:
        Book("BTCTRY", 0, 8).apply(b'[431,{"CS":1,"AO":[],"event":"BT\\ud800C","BO":[]}]')
    assert info.value.offset == 32 and "surrogate" in str(info.value)


def test_an_escaped_ps_too_long_for_a_pair_is_an_error_even_with_an_event(book_class: type) -> None:
    """Found while fixing the one above: a PS string whose escapes decode to more than a pair
    name's bytes left the core without PS, and it took event as the pair."""
    frame = b'[431,{"CS":1,"PS":"' + b"\\u0041" * 70 + b'","event":"BTCTRY","AO":[],"BO":[]}]'
    with pytest.raises(FrameError):
        book_class("BTCTRY", 0, 8).apply(frame)


def test_a_books_error_for_a_str_that_utf8_cannot_encode_names_its_pair() -> None:
    with pytest.raises(FrameError) as info:
        Book("BTCTRY", 0, 8).apply('[431,{"CS":1,"PS":"BTCTRY","\udc80":1}]')
    assert info.value.pair == "BTCTRY" and info.value.offset == 28
    with pytest.raises(FrameError) as info:
        BookSet().apply('[431,{"CS":1,"PS":"BTCTRY","\udc80":1}]')
    assert info.value.pair is None      # a BookSet has read no pair: the frame never reached it


@pytest.mark.parametrize(
    "frame",
    [
        b'[432,{"CS":1,"PS":"","AO":[],"BO":[],"channel":"obdiff","event":"","type":432}]',
        b'[432,{"CS":1,"PS":"","AO":[],"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}]',
        b'[431,{"CS":1,"PS":"","AO":[],"BO":[],"channel":"orderbook","event":"","type":431}]',
    ],
)
def test_an_empty_pair_name_in_the_exchanges_layout_is_an_error(book_class: type, bookset_class: type,
                                                                 frame: bytes) -> None:
    """Found by the clang fuzzing run: reading a pair name as two words shifted a 64-bit mask by
    64 bits for a name of no bytes, which C leaves undefined (the sanitizer build stops on it; the
    release build happened to refuse the frame). An empty PS is an error, as in the reference."""
    with pytest.raises(FrameError):
        book_class("BTCTRY", 0, 8).apply(frame)
    with pytest.raises(FrameError):
        bookset_class().apply(frame)
