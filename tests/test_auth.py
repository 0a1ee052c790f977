"""Signing and credentials (obengine.auth): the known answers of the issue, the websocket login
message, and every way credentials can be wrong, each with a clear error that holds no secret."""
from __future__ import annotations

import base64
import os
import pickle
import stat
from pathlib import Path

import pytest

from obengine import CredentialsError
from obengine.auth import (
    MAX_WS_NONCE,
    BtcTurkSigner,
    KrakenSigner,
    btcturk_signature,
    kraken_signature,
    load_credentials,
)

# The REST side runs no native code of obengine's: nothing for the sanitizer build to check.
pytestmark = pytest.mark.no_sanitizer

PUBLIC = "b6a9c2e1-4f0d-4c3a-9d1e-0a7f5e3c2b18"
PRIVATE = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
KRAKEN_SECRET = "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+fw=="


def test_btcturk_rest_signature_matches_the_known_answer() -> None:
    headers = BtcTurkSigner(PUBLIC, PRIVATE).headers(nonce_ms=1700000000000)
    assert headers == {
        "X-PCK": PUBLIC,
        "X-Stamp": "1700000000000",
        "X-Signature": "ZeNZ24F6ny/E9pETfq6ojfasnZiUksxV3b3yEGpUp7c=",
    }
    assert btcturk_signature(base64.b64decode(PRIVATE), PUBLIC, 1700000000000) == headers["X-Signature"]


def test_kraken_signature_matches_the_known_answer() -> None:
    expected = "sjDXdwXVGDrSRQHxOs5rekeMNi4hScr5MeyVySeJnuzTE8OC1ghvZVUwtXod095HwZiJ5mwnFIS8py00qXmtHg=="
    signer = KrakenSigner("kraken-key", KRAKEN_SECRET)
    path, nonce = "/0/private/GetWebSocketsToken", 1700000000123
    assert signer.sign(path, nonce, f"nonce={nonce}") == expected
    assert signer.sign(path, str(nonce), f"nonce={nonce}".encode()) == expected
    assert kraken_signature(base64.b64decode(KRAKEN_SECRET), path, nonce, f"nonce={nonce}") == expected
    assert signer.headers(path, nonce, f"nonce={nonce}") == {"API-Key": "kraken-key", "API-Sign": expected}


def test_headers_default_to_the_current_time_in_ms() -> None:
    import time

    before = time.time_ns() // 1_000_000
    stamp = int(BtcTurkSigner(PUBLIC, PRIVATE).headers()["X-Stamp"])
    after = time.time_ns() // 1_000_000
    assert before <= stamp <= after


def test_ws_login_is_the_114_message_with_numbers_and_the_nonce_signature() -> None:
    signer = BtcTurkSigner(PUBLIC, PRIVATE)
    msg = signer.ws_login(nonce=3000, timestamp_ms=1700000000000)
    assert msg == [
        114,
        {
            "type": 114,
            "publicKey": PUBLIC,
            "timestamp": 1700000000000,
            "nonce": 3000,
            "signature": btcturk_signature(base64.b64decode(PRIVATE), PUBLIC, 3000),
        },
    ]


def test_ws_login_draws_a_fresh_random_nonce_in_range_each_time() -> None:
    signer = BtcTurkSigner(PUBLIC, PRIVATE)
    nonces = [signer.ws_login()[1]["nonce"] for _ in range(50)]
    assert all(isinstance(n, int) and 1 <= n <= MAX_WS_NONCE for n in nonces)
    assert len(set(nonces)) > 45
    for bad in (0, -1, True, "5"):
        with pytest.raises(ValueError):
            signer.ws_login(nonce=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["not base64!", "", "   ", "AQID*A==", "QUJD\x00"])
def test_a_private_key_that_is_not_base64_is_an_error_at_construction(key: str) -> None:
    with pytest.raises(CredentialsError) as info:
        BtcTurkSigner(PUBLIC, key)
    assert "base64" in str(info.value)
    if key.strip():
        assert key not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_kraken_secret_that_is_not_base64_is_an_error() -> None:
    with pytest.raises(CredentialsError, match="Kraken secret"):
        KrakenSigner("k", "%%%")


def test_public_key_must_be_present_and_clean() -> None:
    for bad in ("", "  ", "a b", "a\nb"):
        with pytest.raises(CredentialsError):
            BtcTurkSigner(bad, PRIVATE)


def test_signers_never_show_or_pickle_the_secret() -> None:
    signer = BtcTurkSigner(PUBLIC, PRIVATE)
    kraken = KrakenSigner("kraken-key", KRAKEN_SECRET)
    raw = base64.b64decode(PRIVATE)
    for obj in (signer, kraken, signer._private, kraken._secret):
        text = repr(obj) + str(obj)
        assert PRIVATE not in text and KRAKEN_SECRET not in text and repr(raw) not in text
        with pytest.raises(TypeError, match="not picklable"):
            pickle.dumps(obj)
    assert repr(signer) == "BtcTurkSigner(public_key='b6a9c2e1...2b18')"


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_credentials_file_with_both_exchanges(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "creds.env",
        "# obengine credentials\n"
        f"OBENGINE_BTCTURK_PUBLIC_KEY={PUBLIC}\n"
        f"export OBENGINE_BTCTURK_PRIVATE_KEY='{PRIVATE}'\n\n"
        'OBENGINE_KRAKEN_API_KEY="kraken-key"\n'
        f"OBENGINE_KRAKEN_SECRET={KRAKEN_SECRET}\n",
        0o600,
    )
    creds = load_credentials(f, environ={})
    assert creds.btcturk is not None and creds.kraken is not None
    assert creds.btcturk.headers(1700000000000)["X-Signature"] == "ZeNZ24F6ny/E9pETfq6ojfasnZiUksxV3b3yEGpUp7c="
    assert creds.kraken.api_key == "kraken-key"
    assert BtcTurkSigner.from_file(f).public_key == PUBLIC
    assert KrakenSigner.from_file(f).api_key == "kraken-key"


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_a_credentials_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    f = _write(tmp_path / "creds.env", f"OBENGINE_BTCTURK_PUBLIC_KEY={PUBLIC}\nOBENGINE_BTCTURK_PRIVATE_KEY={PRIVATE}\n", mode)
    with pytest.raises(CredentialsError) as info:
        load_credentials(f, environ={})
    message = str(info.value)
    assert f"{mode:04o}" in message and "chmod 600" in message and str(f) in message
    assert PRIVATE not in message


def test_credentials_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(CredentialsError, match="cannot open"):
        load_credentials(tmp_path / "missing.env", environ={})
    bad = _write(tmp_path / "bad.env", "OBENGINE_BTCTURK_PUBLIC_KEY\n", 0o600)
    with pytest.raises(CredentialsError, match="line 1: expected NAME=value"):
        load_credentials(bad, environ={})
    unknown = _write(tmp_path / "unknown.env", f"PRIVATE_KEY={PRIVATE}\n", 0o600)
    with pytest.raises(CredentialsError, match="unknown name 'PRIVATE_KEY'") as info:
        load_credentials(unknown, environ={})
    assert PRIVATE not in str(info.value)
    half = _write(tmp_path / "half.env", f"OBENGINE_BTCTURK_PRIVATE_KEY={PRIVATE}\n", 0o600)
    with pytest.raises(CredentialsError, match="OBENGINE_BTCTURK_PUBLIC_KEY is not"):
        load_credentials(half, environ={})
    with pytest.raises(CredentialsError, match="not a regular file"):
        os.chmod(tmp_path, 0o700)
        load_credentials(tmp_path, environ={})


def test_credentials_from_the_environment_and_the_file_first(tmp_path: Path) -> None:
    env = {"OBENGINE_BTCTURK_PUBLIC_KEY": "env-public", "OBENGINE_BTCTURK_PRIVATE_KEY": PRIVATE}
    assert BtcTurkSigner.from_env(env).public_key == "env-public"
    f = _write(tmp_path / "c.env", f"OBENGINE_BTCTURK_PUBLIC_KEY={PUBLIC}\n", 0o600)
    assert load_credentials(f, environ=env).btcturk.public_key == PUBLIC  # type: ignore[union-attr]
    assert load_credentials(environ={}).btcturk is None
    with pytest.raises(CredentialsError, match="set OBENGINE_BTCTURK_PUBLIC_KEY"):
        BtcTurkSigner.from_env({})
    with pytest.raises(CredentialsError, match="set OBENGINE_KRAKEN_API_KEY"):
        KrakenSigner.from_env({})
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600


def test_ws_login_signature_is_the_hmac_of_public_key_and_nonce_computed_independently() -> None:
    import hashlib
    import hmac

    expected = base64.b64encode(
        hmac.new(base64.b64decode(PRIVATE), f"{PUBLIC}3000".encode(), hashlib.sha256).digest()
    ).decode()
    assert BtcTurkSigner(PUBLIC, PRIVATE).ws_login(nonce=3000)[1]["signature"] == expected


def test_a_refused_websocket_login_carries_the_servers_message_and_the_usual_causes() -> None:
    from obengine import AuthError
    from obengine.auth import check_ws_login

    check_ws_login({"type": 114, "ok": True})
    with pytest.raises(AuthError, match="Unauthorized - Invalid Public key") as info:
        check_ws_login({"type": 114, "ok": False, "id": 0, "message": "Unauthorized - Invalid Public key"})
    assert "websocket access" in str(info.value) and "clock" in info.value.hint
    with pytest.raises(AuthError, match="without a message"):
        check_ws_login({"type": 114})
