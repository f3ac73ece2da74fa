"""The client stack of Element (matrix-js-sdk with its Rust crypto) talks to the bot.

``jsclient/dm-roundtrip.mjs`` logs in as a person, sets up that person's cross-signing,
creates an encrypted direct chat with the bot exactly as Element does and, in
``OnlySignedDevicesIsolationMode`` (current Element's "invisible crypto": room keys only
for devices their owner cross-signed), sends commands and waits for the bot's decrypted
answers. It prints one JSON object. ``./dev test`` runs ``npm ci`` for it first.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from bot.devserver import LocalSynapse
from tests.e2e.conftest import BotFactory, unique

pytestmark = pytest.mark.e2e

CLIENT_DIR = Path(__file__).resolve().parent / "jsclient"


async def run_client(synapse: LocalSynapse, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    node = shutil.which("node")
    if node is None or not (CLIENT_DIR / "node_modules" / "matrix-js-sdk").is_dir():
        pytest.fail(
            "The Element-stack test needs Node.js 20+ and npm, and `npm ci` run in "
            f"{CLIENT_DIR} (./dev test does it). Install Node.js (e.g. apt-get install "
            "nodejs npm) and run ./dev test again."
        )
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLIENT_DIR / "dm-roundtrip.mjs"),
        "--json",
        "-",  # the password goes through stdin, not the command line
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    config = {"homeserver": synapse.base_url, **config}
    out, err = await asyncio.wait_for(
        proc.communicate(json.dumps(config).encode()), config["timeout"] + 15
    )
    assert proc.returncode is not None
    assert out.count(b"\n") == 1, f"one JSON line expected; stderr:\n{err.decode()[-3000:]}"
    return proc.returncode, json.loads(out)


async def test_element_in_invisible_crypto_mode_gets_decrypted_answers_from_a_cross_signed_bot(
    synapse: LocalSynapse, make_bot: BotFactory
) -> None:
    bot = await make_bot()
    alice = await synapse.register(unique("alice"))

    code, result = await run_client(
        synapse,
        {
            "user_id": alice.user_id,
            "password": alice.password,
            "bot": bot.user_id,
            "mode": "signed",  # OnlySignedDevicesIsolationMode
            "encrypt": "auto",  # like Element Web: encrypted because the bot has keys
            "messages": ["!help", "!cops"],
            "timeout": 60,
        },
    )

    assert code == 0, result
    assert result["room_created"] and result["room_encrypted"]
    assert result["bot_has_device_keys"] is True
    help_reply, cops_reply = result["replies"]
    assert help_reply["decrypted"] and help_reply["sent_encrypted"]
    assert help_reply["matched"] == "in_reply_to"
    assert "!cops" in help_reply["reply_body"]
    assert "HDEV" in cops_reply["reply_body"] and cops_reply["decrypted"]
    # The bot's device is signed by its owner (the bot's own cross-signing identity), so
    # Element shows no warning next to its messages.
    assert result["bot_device_cross_signed"] is True
    assert [d["signed_by_owner"] for d in result["bot_devices"]] == [True]
    assert result["shields"] == []
    assert result["warnings"] == []
