"""BookSet (docs/rules.md, "BookSet"): routing by pair, books created on first sight after
validation, scales from the user mapping, else DEFAULT_SCALES, else (0, 0) then inferred.

Every test runs against the reference (``[ref]``) and the core (``[core]``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from helpers import f431, f432, levels, raw, set_state, state
from obengine import DEFAULT_SCALES, FrameError, Status


def test_an_empty_bookset(bookset_class: Any) -> None:
    books = bookset_class()
    assert len(books) == 0 and list(books) == []
    assert "BTCTRY" not in books
    with pytest.raises(KeyError):
        books["BTCTRY"]


def test_frames_are_routed_to_the_book_of_their_pair(
    bookset_class: Any, book_class: Any
) -> None:
    books = bookset_class()
    assert books.apply(f431(10, [("2150010", "0.5")], [("2150000", "1")])) == (
        "BTCTRY",
        Status.APPLIED,
    )
    assert books.apply(f431(-7, [("90010", "2")], [("90000", "3")], pair="ETHTRY")) == (
        "ETHTRY",
        Status.APPLIED,
    )
    assert books.apply(f432(11, [("2150010", "0.7", 0)])) == ("BTCTRY", Status.APPLIED)
    assert books.apply(f432(-6, [], [("90000", None, 3)], pair="ETHTRY")) == (
        "ETHTRY",
        Status.APPLIED,
    )
    assert books.apply(f432(13, [("2150010", "0.9", 0)])) == ("BTCTRY", Status.GAP)
    assert len(books) == 2 and sorted(books) == ["BTCTRY", "ETHTRY"]
    assert "BTCTRY" in books and "ETHTRY" in books and "XRPTRY" not in books
    btc, eth = books["BTCTRY"], books["ETHTRY"]
    assert isinstance(btc, book_class) and btc.pair == "BTCTRY"
    assert state(btc) == ([(2150000, 100_000_000)], [(2150010, 70_000_000)], 0, 8, 11, False, 0, False)
    assert state(eth) == ([], [(90010, 200_000_000)], 0, 8, -6, True, 0, False)
    assert books["BTCTRY"] is btc  # the same book every time
    assert isinstance(books, Mapping)


def test_frames_that_are_not_book_frames_route_nowhere(bookset_class: Any) -> None:
    books = bookset_class()
    for frame in ('[991,{"type":991,"current":"5.1.0","min":"2.3.0"}]', "[421,[]]", "[100,{}]"):
        assert books.apply(frame) == (None, Status.IGNORED)
    assert len(books) == 0


def test_the_pair_comes_from_event_when_ps_is_null(bookset_class: Any) -> None:
    books = bookset_class()
    frame = raw([431, {"CS": -1748790363, "PS": None, "event": "XRPTRY", "AO": [], "BO": []}])
    assert books.apply(frame) == ("XRPTRY", Status.APPLIED)
    assert books["XRPTRY"].seq == -1748790363


def test_pairs_alike_in_their_first_bytes_keep_their_own_books(bookset_class: Any) -> None:
    # the core's index compares a name's first 16 bytes in its slot, as two words zeroed past the
    # name's end (the frame's bytes after it are loaded too, then masked off), the rest in the
    # book's name: lengths on both sides of each word's end, and names that differ in one byte,
    # which a mask one byte short would send to one book
    pairs = ["A", "AB", "ABCDEFG", "ABCDEFGH", "ABCDEFGX", "ABCDEFGHI", "ABCDEFGHJ", "ABCDEFGHIJKLMNO",
             "ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOQ", "ABCDEFGHIJKLMNOPQ", "ABCDEFGHIJKLMNOPQRS",
             "ABCDEFGHIJKLMNOPQRT"]
    books = bookset_class()
    for i, pair in enumerate(pairs):
        assert books.apply(f431(i, [(str(100 + i), "1")], [], pair=pair)) == (pair, Status.APPLIED)
    for i, pair in enumerate(pairs):
        assert books.apply(f432(i + 1, [(str(200 + i), "2", 0)], pair=pair)) == (pair, Status.APPLIED)
    for i, pair in enumerate(pairs):
        assert [price for price, _ in levels(books[pair])[1]] == [100 + i, 200 + i]
        assert books[pair].seq == i + 1


@pytest.mark.parametrize("pair", sorted(DEFAULT_SCALES))
def test_a_new_book_takes_the_bundled_scales(bookset_class: Any, pair: str) -> None:
    books = bookset_class()
    books.apply(f431(1, [], [], pair=pair))
    book = books[pair]
    assert (book.price_scale, book.amount_scale) == DEFAULT_SCALES[pair]


def test_the_user_mapping_wins_for_its_pairs_only(bookset_class: Any) -> None:
    books = bookset_class({"BTCTRY": (2, 4), "NEWPAIR": (3, 1)})
    for pair in ("BTCTRY", "NEWPAIR", "ETHUSDT", "UNKNOWN"):
        books.apply(f431(1, [], [], pair=pair))
    scales = {pair: (books[pair].price_scale, books[pair].amount_scale) for pair in books}
    assert scales == {
        "BTCTRY": (2, 4),
        "NEWPAIR": (3, 1),
        "ETHUSDT": DEFAULT_SCALES["ETHUSDT"],
        "UNKNOWN": (0, 0),
    }


def test_an_unknown_pair_infers_its_scales_from_the_first_snapshot(bookset_class: Any) -> None:
    books = bookset_class()
    books.apply(f431(1, [("0.01234", "1500")], [("0.0123", "0.25")], pair="SHIBTRY"))
    book = books["SHIBTRY"]
    assert state(book) == ([(1230, 25)], [(1234, 150_000)], 5, 2, 1, True, 0, False)
    books.apply(f432(2, [("0.01235", "12.5", 1)], pair="SHIBTRY"))
    assert (book.price_scale, book.amount_scale) == (5, 2)


def test_a_first_432_creates_an_unsynced_book(bookset_class: Any) -> None:
    books = bookset_class()
    assert books.apply(f432(5, [("100", "1", 1)], pair="ETHTRY")) == ("ETHTRY", Status.GAP)
    assert state(books["ETHTRY"]) == ([], [], 0, 8, None, False, 0, False)


@pytest.mark.parametrize(
    "frame",
    [
        '[431,{"CS":1,"PS":"NEWPAIR","AO":[{"P":"0","A":"1"}]}]',
        '[432,{"CS":1,"PS":"NEWPAIR","AO":[{"P":"1","A":"1","CP":2}]}]',
        '[431,{"CS":1,"PS":"NEWPAIR","AO":[]',
        '[431,{"PS":"NEWPAIR"}]',
        b'[431,{"CS":1,"PS":"NEW\xffPAIR"}]',
        '[431,{"CS":1,"PS":"NEWPAIR\\ud800"}]',  # a pair name with no UTF-8 form
    ],
)
def test_a_malformed_frame_creates_no_book_and_changes_none(
    bookset_class: Any, frame: Any
) -> None:
    books = bookset_class()
    books.apply(f431(1, [("2150010", "0.5")], [("2150000", "1")]))
    before = set_state(books)
    with pytest.raises(FrameError):
        books.apply(frame)
    assert set_state(books) == before and "NEWPAIR" not in books


def test_a_first_frame_int64_cannot_hold_creates_a_wide_book(bookset_class: Any) -> None:
    books = bookset_class({"TINY": (18, 0)})
    # 100 at price scale 18 is 10**20 units: more than int64, so the new book is wide
    assert books.apply(f431(1, [("100", "1")], [], pair="TINY")) == ("TINY", Status.APPLIED)
    assert state(books["TINY"]) == ([], [(10**20, 1)], 18, 0, 1, True, 0, True)
    assert books.apply(f431(1, [("1", "1")], [], pair="SMALL")) == ("SMALL", Status.APPLIED)
    assert state(books["SMALL"]) == ([], [(1, 1)], 0, 0, 1, True, 0, False)


def test_a_first_frame_beyond_a_net_decimal_creates_no_book(bookset_class: Any) -> None:
    books = bookset_class({"TINY": (18, 0)})
    for price in ("79228162514264337593543950336", "1e-29"):  # m = 2**96; 29 decimal places
        with pytest.raises(FrameError):
            books.apply(f431(1, [(price, "1")], [], pair="TINY"))
        assert "TINY" not in books and len(books) == 0
    assert books.apply(f431(1, [("1", "1")], [], pair="TINY")) == ("TINY", Status.APPLIED)
    assert levels(books["TINY"]) == ([], [(10**18, 1)])
    assert not books["TINY"].wide


def test_books_are_independent(bookset_class: Any) -> None:
    books = bookset_class()
    books.apply(f431(1, [("2150010", "0.5")], [("2150000", "1")]))
    books.apply(f431(1, [("90010", "0.5")], [("90000", "1")], pair="ETHTRY"))
    eth = state(books["ETHTRY"])
    assert books.apply(f432(3, [("2150010", "0.7", 0)])) == ("BTCTRY", Status.GAP)
    assert books.apply(f432(2, [("2150010.5", "0.000000001", 1)])) == ("BTCTRY", Status.GAP)
    assert books.apply(f431(5, [("2150010.5", "0.000000001")], [])) == ("BTCTRY", Status.APPLIED)
    assert state(books["ETHTRY"]) == eth
    assert books.apply(f432(2, [("90010", "0.7", 0)], pair="ETHTRY")) == (
        "ETHTRY",
        Status.APPLIED,
    )


def test_status_values_are_status_members(bookset_class: Any) -> None:
    books = bookset_class()
    pair, status = books.apply(f431(1, [], []))
    assert pair == "BTCTRY" and isinstance(status, Status)
    pair, status = books.apply("[991]")
    assert pair is None and isinstance(status, Status) and status == Status.IGNORED


def test_a_collection_while_a_new_book_is_made_cannot_mix_in_another_frame() -> None:
    """Core only (the reference has no shared scratch area). Making the Book for a new pair
    allocates an object the garbage collector tracks; a collection then may run Python code (here a
    gc callback, in real programs a finalizer, or another thread) that applies another frame and so
    reuses the core's scratch area. The new book must still get exactly its own frame."""
    import gc

    from obengine import BookSet

    other = BookSet()
    other_frame = f431(7, asks=[("999", "9")], bids=[("998", "8")], pair="ETHTRY")
    books = BookSet()
    frame = f431(5, asks=[("2150010", "0.5")], bids=[("2150000", "2")])
    armed: list[bool] = []
    seen_before_commit: list[bool] = []

    def apply_another_frame(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and armed:
            armed.clear()
            seen_before_commit.append("BTCTRY" not in books)
            other.apply(other_frame)

    threshold = gc.get_threshold()
    gc.callbacks.append(apply_another_frame)
    try:
        gc.set_threshold(1)         # from here on, nearly every tracked allocation collects
        armed.append(True)
        result = books.apply(frame)
        armed.clear()
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(apply_another_frame)
    assert result == ("BTCTRY", Status.APPLIED)
    assert seen_before_commit == [True], "the collection this test needs did not come while the book was made"
    assert levels(books["BTCTRY"]) == ([(2150000, 200000000)], [(2150010, 50000000)])
    assert list(books) == ["BTCTRY"]
    assert levels(other["ETHTRY"]) == ([(998, 800000000)], [(999, 900000000)])
