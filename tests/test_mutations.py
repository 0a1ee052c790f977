"""Mutated exchange-shaped frames: the core and the reference model agree on every one.

The hypothesis streams in test_differential.py vary the JSON freely; the frames here stay close to
what the exchange (and the simulator) send, byte for byte, because that is the shape the core's
templates are written for: a frame in the exchange's layout is read straight through, and each
level in its compact layout with unchecked loads; a template must either accept a frame or level
exactly as the general parser would, or hand it over. Each frame is mutated at random (a byte
replaced, deleted, inserted or duplicated, a cut, a digit changed) with a fixed seed, and after
every frame both implementations must agree on the outcome (status or FrameError) and on the whole
state of every book.
"""
from __future__ import annotations

import random

import pytest

from helpers import outcome, set_state
from obengine import BookSet
from obengine.simulator import FeedSimulator
from reference import RefBookSet

# Bytes that matter to the grammar and to the template: structure, digits, signs, exponents.
INTERESTING = b'{}[],:"\\ 0123456789-+.eE\x00\x7f\xc3\xa9ACPSBOxt'


def mutate(frame: bytes, rng: random.Random) -> bytes:
    data = bytearray(frame)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        i = rng.randrange(len(data))
        kind = rng.randrange(6)
        if kind == 0:
            data[i] = rng.choice(INTERESTING)
        elif kind == 1 and len(data) > 1:
            del data[i]
        elif kind == 2:
            data.insert(i, rng.choice(INTERESTING))
        elif kind == 3:
            j = min(len(data), i + rng.randrange(1, 12))
            data[i:i] = data[i:j]
        elif kind == 4:
            del data[i:]
            if not data:
                data = bytearray(b"[")
        else:
            digits = [k for k, c in enumerate(data) if 48 <= c <= 57]
            if digits:
                data[rng.choice(digits)] = rng.choice(b"0123456789")
    return bytes(data)


@pytest.mark.parametrize("profile", ["typical", "hard"])
def test_core_and_reference_agree_on_mutated_exchange_frames(profile: str) -> None:
    rng = random.Random(f"mutations-{profile}")
    sim = FeedSimulator(("BTCTRY", "XRPBTC", "AB12TRY"), seed=7, profile=profile)
    frames = sim.frames(300 if profile == "typical" else 60)
    core, ref = BookSet(sim.scales), RefBookSet(sim.scales)
    mutated = errors = 0
    for frame in frames:
        candidates = [frame] + [mutate(frame, rng) for _ in range(6)]
        for raw in candidates:
            got_core, got_ref = outcome(core, raw), outcome(ref, raw)
            assert got_core == got_ref, raw
            assert set_state(core) == set_state(ref), raw
            mutated += raw is not frame
            errors += got_core == "FrameError"
    # the mutations reached both sides of the template: errors and accepted variants
    assert errors > mutated // 10
    assert errors < mutated
