"""The keyring: what SAGA_DATA_KEYS accepts, and what opens what."""

from __future__ import annotations

import base64
import os

import pytest

from coordinator import SealedDataError, SettingsError
from coordinator._sealing import Keyring, redact


def key(n: int = 32) -> str:
    return base64.b64encode(os.urandom(n)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"k1:{key(16)}", "key 'k1' is 16 bytes, AES-256 needs 32"),
        ("k1:not base64!", "key 'k1' is not base64"),
        (key(), "an entry is KID:BASE64KEY"),
        (f"k:1:{key()}", "not base64"),
        (f"bad kid:{key()}", "key id 'bad kid'"),
        (" , ", "no key given"),
    ],
)
def test_malformed_keys_are_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        Keyring.parse(text)
    assert "\n" not in str(caught.value)


def test_a_key_never_appears_in_the_error() -> None:
    secret = key(16)
    with pytest.raises(SettingsError) as caught:
        Keyring.parse(f"k1:{secret}")
    assert secret not in str(caught.value)


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = key(), key()
    before = Keyring.parse(f"old:{old}")
    sealed = before.seal(b'"4111"', b"s1|data.card")
    after = Keyring.parse(f"new:{new}\nold:{old}")  # a file: one per line
    assert after.active == "new" and after.kids == ("new", "old")
    assert after.open(sealed, b"s1|data.card") == b'"4111"'
    assert after.seal(b"x", b"a").startswith("enc:v1:new:")


def test_a_value_opens_only_in_its_own_saga_and_field() -> None:
    ring = Keyring.parse(f"k:{key()}")
    sealed = ring.seal(b'"4111"', b"s1|data.card")
    for place in (b"s2|data.card", b"s1|data.email"):
        with pytest.raises(SealedDataError, match="does not authenticate"):
            ring.open(sealed, place)
    with pytest.raises(SealedDataError, match=r"not base64|does not authenticate"):
        ring.open(sealed[:-8], b"s1|data.card")


def test_configured_reads_a_file_and_refuses_both(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "keys")
    with open(path, "w") as f:
        f.write(f"# rotated 2026-12\nk2:{key()}\nk1:{key()}\n")
    ring = Keyring.configured(keys_file=path)
    assert ring is not None and ring.kids == ("k2", "k1")
    assert Keyring.configured() is None
    with pytest.raises(SettingsError, match="not both"):
        Keyring.configured(f"k:{key()}", path)
    with pytest.raises(SettingsError, match=r"SAGA_DATA_KEYS_FILE='/nonexistent'"):
        Keyring.configured(keys_file="/nonexistent")


def test_redact_replaces_every_sealed_string() -> None:
    ring = Keyring.parse(f"k:{key()}")
    value = {"card": ring.seal(b"1", b"a"), "n": 1, "l": [ring.seal(b"1", b"b"), "x"]}
    assert redact(value) == {"card": "•••", "n": 1, "l": ["•••", "x"]}


def test_saga_token_payloads_makes_an_entry_that_may_read_payloads() -> None:
    import json

    from typer.testing import CliRunner

    from coordinator.cli._app import app
    from coordinator.service import Settings, Tokens

    done = CliRunner().invoke(app, ["token", "--name", "auditor", "--payloads"])
    assert done.exit_code == 0, done.output
    token = done.output.split("token (shown once): ")[1].split()[0]
    entry = json.loads(done.output.split("add to the SAGA_API_TOKENS list: ")[1])
    assert entry["payloads"] is True
    principal = Tokens.from_settings(Settings(api_tokens=[entry])).check(token)
    assert principal is not None and (principal.role, principal.payloads) == ("viewer", True)


def test_a_value_that_only_looks_sealed_is_sealed_and_given_back_as_it_came() -> None:
    from coordinator._sealing import Sealer

    ring = Keyring.parse(f"k:{key()}")
    sealer = Sealer(ring, {("s", 1): frozenset({"card"})})
    fake = "enc:v1:k:AAAA"
    state = b'{"saga_id":"x","name":"s","version":1,"data":{"card":"' + fake.encode() + b'"}}'
    sealed = sealer.seal_state(state, "x", "s", 1)
    assert fake.encode() not in sealed
    assert sealer.open_state(sealed) == state
