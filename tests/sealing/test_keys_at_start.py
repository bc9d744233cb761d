"""``saga run`` with a sensitive saga and no key, or a malformed key: one line, exit 2,
before any server is reached (the URLs point nowhere), and never the key itself."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
HERE = Path(__file__).parent


def run(**env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGA_")},
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "SAGA_AMQP_URL": "amqp://127.0.0.1:1/",
        "SAGA_REDIS_URL": "redis://127.0.0.1:1/0",
        "SAGA_WAIT_FOR_SERVERS": "0",
        "SAGA_HTTP": "off",
        **env,
    }
    return subprocess.run(
        [str(BIN / "saga"), "run", "--saga", "pii_support:PAY"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


SHORT = base64.b64encode(os.urandom(16)).decode()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, ["'pii.pay' v1 marks data fields sensitive", "SAGA_DATA_KEYS"]),
        ({"SAGA_DATA_KEYS": f"k1:{SHORT}"}, ["key 'k1' is 16 bytes, AES-256 needs 32"]),
        ({"SAGA_DATA_KEYS": "k1"}, ["KID:BASE64KEY"]),
        ({"SAGA_DATA_KEYS_FILE": "/nonexistent/keys"}, ["SAGA_DATA_KEYS_FILE", "No such file"]),
    ],
)
def test_a_missing_or_bad_key_is_one_line_and_exit_code_2(
    env: dict[str, str], words: list[str]
) -> None:
    done = run(**env)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line
    assert SHORT not in output
