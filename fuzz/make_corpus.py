#!/usr/bin/env python3
"""Write the seed corpus of fuzz/fuzz_core.py: a few hundred small inputs, generated, never
committed.

    python fuzz/make_corpus.py [DIR]        # default: .fuzz/corpus (git-ignored)

Every input is ``MODE FRAME [0xFF FRAME]...`` (see fuzz_core.py): single frames and short
sequences (a pair's 431, then several of its 432s; or a few pairs interleaved, for the BookSet)
from the package's seeded simulator, ``obengine.simulator.FeedSimulator``, in both profiles
(and, when the simulator has the ``spelling`` keyword, in each of its spellings), plus hand-written
edge cases the simulator does not write: escaped pair names, ``PS: null`` with ``event``, negative
and wrapping CS, numbers as JSON numbers and with exponents, CP 3 without A, unknown keys, crossed
books, values that need a rescale or do not fit, non-book frames, malformed frames. The output is
deterministic: the same simulator gives the same files.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import random
import shutil
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from fuzz_core import SEPARATOR, join_input  # noqa: E402
from obengine.simulator import FeedSimulator  # noqa: E402

#: Largest input written: one frame (a 100-level snapshot, a big change set), and several. Small
#: inputs run faster (the reference model is pure Python); libFuzzer's -max_len in run.sh is
#: larger, so every seed is read whole.
MAX_BYTES = 12_000
MAX_BYTES_SEQUENCE = 4_000

PAIRS_ONE = ("BTCTRY",)
PAIRS_MANY = ("BTCTRY", "XRPBTC", "AB12TRY")


def simulator_variants() -> list[dict[str, object]]:
    """Keyword sets for FeedSimulator: both profiles, and both spellings if it has them."""
    params = inspect.signature(FeedSimulator).parameters
    spellings: list[object] = [None]
    if "spelling" in params:
        spellings = ["exchange", "fixed"]
    variants = []
    for profile in ("typical", "hard"):
        for spelling in spellings:
            kwargs: dict[str, object] = {"profile": profile}
            if spelling is not None:
                kwargs["spelling"] = spelling
            variants.append(kwargs)
    return variants


def mode_byte(rng: random.Random) -> int:
    """Mostly bytes frames at the pair's default scales; sometimes every other choice."""
    kind = rng.choice((0, 0, 0, 1, 2, 3))
    scales = rng.choice((0, 0, 0, 1, 2, 3, 4, 5, 6, 7))
    return kind | scales << 2 | rng.choice((0, 0x20)) | rng.choice((0, 0, 0, 0x40)) | rng.choice((0, 0, 0x80))


class _Timeout(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Timeout


#: Seconds one simulator may take for its frames before it is given up (a simulator being
#: changed may loop on a small window; the corpus should still come out).
TIME_LIMIT = 5

_HUNG: set[tuple[str, int]] = set()  # (variant, window) that took too long once


def generate(pairs: tuple[str, ...], seed: int, levels: int, kwargs: dict[str, object], n: int,
             snapshot: str | None = None) -> list[bytes]:
    """n frames of a simulator (and a snapshot of one pair); with the exchange's 100-level window
    if the small window takes too long; [] if that does too."""
    for window in dict.fromkeys((levels, 100)):
        if (repr(kwargs), window) in _HUNG:
            continue
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(TIME_LIMIT)
        try:
            sim = FeedSimulator(pairs, seed=seed, levels=window, **kwargs)  # type: ignore[arg-type]
            frames = sim.frames(n)
            if snapshot is not None:
                frames.append(sim.snapshot(snapshot))
            return frames
        except _Timeout:
            _HUNG.add((repr(kwargs), window))
            print(f"make_corpus: FeedSimulator({pairs}, seed={seed}, levels={window}, {kwargs})"
                  f".frames({n}) took over {TIME_LIMIT} s; skipped", file=sys.stderr)
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    return []


def simulated(rng: random.Random) -> list[tuple[int, list[bytes]]]:
    inputs: list[tuple[int, list[bytes]]] = []
    for v, kwargs in enumerate(simulator_variants()):
        hard = kwargs["profile"] == "hard"
        for seed in range(6):
            levels = (3, 5, 8, 12, 20, 100)[seed]
            # One pair: its 431, then 432s (a Book follows every frame).
            frames = generate(PAIRS_ONE, seed + 100 * v, levels, kwargs, 12 if hard else 30)
            for k in range(1, len(frames)):
                inputs.append((mode_byte(rng), frames[: k + 1] if k < 8 else [frames[0], frames[k]]))
            for frame in frames[:8]:
                inputs.append((mode_byte(rng), [frame]))
            # Several pairs on one socket (the BookSet routes, the Book rejects the others), and a
            # 431 of a pair in the middle of its 432s.
            frames = generate(PAIRS_MANY, seed + 100 * v, levels, kwargs, 10 if hard else 40, "XRPBTC")
            for start in range(0, len(frames) - 1, 5):
                inputs.append((mode_byte(rng), frames[start : start + 5]))
            inputs.append((mode_byte(rng), frames[:3] + frames[-1:]))
    return inputs


def edge_cases() -> list[tuple[int, list[bytes]]]:
    base = b'[431,{"CS":100,"PS":"BTCTRY","AO":[{"A":"0.5","P":"2150010"},{"A":"1.25","P":"2150020"}],"BO":[{"A":"0.1","P":"2150000"},{"A":"2","P":"2149990"}],"channel":"obdiff","event":"BTCTRY","type":431}]'

    def d(cs: object, ao: str = "", bo: str = "", head: str = '"PS":"BTCTRY"', tail: str = "") -> bytes:
        return f'[432,{{"CS":{cs},{head},"AO":[{ao}],"BO":[{bo}]{tail}}}]'.encode()

    cases: list[list[bytes]] = [
        # escaped pair names (the same pair, and another pair for a Book)
        [b'[431,{"CS":1,"PS":"BTC\\u0054RY","AO":[{"A":"1","P":"10"}],"BO":[{"A":"1","P":"9"}]}]'],
        [base, d(101, head='"PS":"\\u0058RPBTC"', ao='{"CP":0,"A":"1","P":"2150010"}')],
        [base, d(101, head='"P\\u0053":"BTCTRY"', ao='{"CP":0,"A":"3","P":"2150010"}')],
        [b'[431,{"CS":5,"PS":"A\\"B\\\\C\\/\\n","AO":[],"BO":[]}]'],
        # PS null / missing: event names the pair
        [base, d(101, head='"PS":null,"event":"BTCTRY"', bo='{"CP":1,"A":"1","P":"2149995"}')],
        [b'[431,{"event":"BTCTRY","CS":"7","AO":[{"P":"5","A":"1"}]}]', d(8, head='"event":"BTCTRY"')],
        [base, d(101, head='"PS":null,"event":null')],
        [base, d(101, head='"PS":7')],
        # negative and wrapping CS, stale and gap
        [base.replace(b'"CS":100', b'"CS":-5'), d(-4, bo='{"CP":0,"A":"3","P":"2150000"}'), d(-4), d(-2), d(-1)],
        [base.replace(b'"CS":100', b'"CS":2147483647'), d(-2147483648, ao='{"CP":3,"P":"2150010"}'), d(-2147483647)],
        [base, d(99), d(100), d(102), d(103), base.replace(b'"CS":100', b'"CS":"103"'), d(104)],
        [d(1), base],
        # numbers: JSON numbers, exponents, trailing zeros, -0
        [b'[431,{"CS":1,"PS":"BTCTRY","AO":[{"A":1.5,"P":2150010}],"BO":[{"A":2e-3,"P":2.15E6}]}]'],
        [b'[4.31e2,{"CS":10.0,"PS":"BTCTRY","AO":[{"A":"1.50","P":"2150010.000"}],"BO":[]}]',
         b'[432.0,{"CS":1.1e1,"PS":"BTCTRY","AO":[{"CP":"0","A":"-0","P":"2150010"}],"BO":[{"CP":1e0,"A":"0.000000001","P":"21499.995e2"}]}]'],
        [base, d(101, ao='{"CP":0,"A":"1e-18","P":"2150010"}')],
        [base, d(101, ao='{"CP":0,"A":"1e-19","P":"2150010"}')],
        [base, d(101, ao='{"CP":1,"A":"9223372036854775807","P":"3000000"}')],
        [base, d(101, ao='{"CP":1,"A":"0.1","P":"9223372036854775807"}')],
        [base, d(101, ao='{"CP":1,"A":"0.1","P":"9223372036854775808"}')],
        [base, d(101, bo='{"CP":1,"A":"0.1","P":"2149999.5"}')],
        [base, d(101, ao='{"CP":1,"A":"0.1","P":"92233720368547758.07"}')],
        [base, d(101, ao='{"CP":1,"A":"1","P":"1e400"}')],
        [base, d(101, ao='{"CP":1,"A":"1","P":"0.00000000000000000000000001e26"}')],
        [base, d(101, ao='{"CP":1,"A":"1","P":"01"}')],
        [base, d(101, ao='{"CP":1,"A":"1","P":" 1"}')],
        [base, d(101, ao='{"CP":1,"A":"1","P":"0"}')],
        [base, d(101, ao='{"CP":1,"A":"-1","P":"2150015"}')],
        # CP kinds: 3 without A, unknown CP, CP missing, amount 0, anomalies
        [base, d(101, ao='{"CP":3,"P":"2150010"},{"CP":3,"P":"1"}', bo='{"P":"2150000","CP":0,"A":"0"}')],
        [base, d(101, ao='{"CP":2,"A":"1","P":"2150010"}')],
        [base, d(101, ao='{"A":"1","P":"2150010"}')],
        [base, d(101, ao='{"CP":0,"A":"1","P":"2150030"},{"CP":1,"A":"1","P":"2150010"}')],
        # crossed, then a new 431
        [base, d(101, bo='{"CP":1,"A":"1","P":"2150010"}'), d(102), base.replace(b'"CS":100', b'"CS":200')],
        # unknown keys with nested values, whitespace, key order, duplicates
        [b' [ 431 , { "x" : [ { "y" : [ null , true , false , 1.5e3 , "\\u00e9" ] } ] , "BO" : [ { "P" : "9" , "A" : "1" , "CP" : 7 , "z" : { } } ] , "CS" : 3 , "PS" : "BTCTRY" } ] \n'],
        [base, d(101, tail=',"CS":101')],
        [base, d(101, ao='{"CP":0,"A":"1","A":"2","P":"2150010"}')],
        [b'[431,{"CS":1,"PS":"BTCTRY","AO":{},"BO":[]}]'],
        [b'[431,{"CS":1,"PS":"BTCTRY","AO":[1],"BO":[]}]'],
        # non-book frames and malformed ones
        [b'[100,{"a":1}]', b'[991,{"type":991}]', b'[431]', b'[432,{},1]', b'[]', b'{}', b'', b'[431,{"CS":1,"PS":"BTCTRY"}'],
        [b'[-431,{}]', b'["431",{}]', b'[431.5,{}]', b'[1e400]', b'[NaN]', b'[431,{"CS":1,"PS":""}]'],
        [b'[431,{"CS":1,"PS":"' + b"X" * 65 + b'"}]', b'[431,{"CS":1,"PS":"' + b"Y" * 64 + b'"}]'],
        [b"[1," + b"[" * 300 + b"]" * 300 + b"]", b"[1," + b"[" * 255 + b"]" * 255 + b"]"],
        # strings: invalid UTF-8, escaped and raw non-ASCII, control characters, lone surrogates
        [b'[431,{"CS":1,"PS":"BTC\xc3\xa9","AO":[],"BO":[]}]', b'[431,{"CS":1,"PS":"BTC\xc3","AO":[],"BO":[]}]'],
        [b'[431,{"CS":1,"PS":"\\ud800","AO":[],"BO":[]}]', b'[431,{"CS":1,"PS":"\\ud83d\\ude00","AO":[],"BO":[]}]'],
        [b'[431,{"CS":1,"PS":"BTC\tTRY","AO":[],"BO":[]}]', b'[431,{"CS":1,"PS":"BTCTRY","x":"\xed\xa0\x80"}]'],
    ]
    # More levels on a side than a book has rows at first (128): the side grows.
    many_asks = ",".join('{"A":"1","P":"%d"}' % (1000 + i) for i in range(140))
    many_bids = ",".join('{"A":"2","P":"%d"}' % (999 - i) for i in range(130))
    grow = f'[431,{{"CS":7,"PS":"BTCTRY","AO":[{many_asks}],"BO":[{many_bids}]}}]'.encode()
    asks_120 = ",".join('{"A":"1","P":"%d"}' % (2150030 + i) for i in range(120))
    more = ",".join('{"CP":1,"A":"3","P":"%d"}' % (2150200 + i) for i in range(20))
    cases.append([grow])
    cases.append([base.replace(b'"AO":[', b'"AO":[' + asks_120.encode() + b","),
                  d(101, ao=more), d(102, ao='{"CP":1,"A":"0.5","P":"2150011.5"}')])
    # More pairs than a BookSet's first index holds (8): the index grows.
    cases.append([b'[431,{"CS":%d,"PS":"P%02dTRY","AO":[{"A":"1","P":"%d"}],"BO":[]}]' % (i, i, 10 + i)
                  for i in range(12)] + [b'[432,{"CS":1,"PS":"P00TRY","AO":[{"CP":3,"P":"10"}],"BO":[]}]'])
    # The exchange's full layout with PS null (the template takes the pair from event).
    cases.append([base, b'[432,{"CS":101,"PS":null,"AO":[{"CP":0,"P":"2150010","A":"0.7"}],"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}]'])
    # Every escape in a pair name and in keys.
    cases.append([b'[431,{"CS":1,"PS":"A\b\f\n\r\t\/\\\"\u00e9\ud83d\ude00","AO":[],"BO":[]}]',
                  b'[431,{"CS":1,"\u0050S":"BTCTRY","A\u004f":[{"\u0041":"1","\u0050":"5"}],"B\u004F":[]}]'])
    return [(0, frames) for frames in cases] + [(1, frames) for frames in cases[:6]] + [
        (3, frames) for frames in cases[-8:]
    ]


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), ".fuzz", "corpus")
    rng = random.Random("obengine-fuzz-corpus")
    inputs = simulated(rng) + edge_cases()
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    written = skipped = 0
    for mode, frames in inputs:
        if any(SEPARATOR in f for f in frames):
            skipped += 1
            continue
        data = join_input(mode, frames)
        if len(data) > (MAX_BYTES if len(frames) == 1 else MAX_BYTES_SEQUENCE):
            skipped += 1
            continue
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        written += 1
    print(f"make_corpus: {written} inputs in {out} ({skipped} too long; "
          f"simulator variants: {simulator_variants()})")


if __name__ == "__main__":
    main()
