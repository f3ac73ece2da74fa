"""The demo: adding a person (``./dev demo adduser NAME``) registers them on the demo's
Synapse with its shared secret; Synapse's own tool works with the demo's config too."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from bot.demo import adduser
from bot.devserver import LocalSynapse
from tests.e2e.conftest import unique


async def test_adduser_registers_a_person_who_can_then_log_in(
    synapse: LocalSynapse, capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("maria")

    assert await adduser(synapse.data_dir, name) == 0
    first = capsys.readouterr().out

    assert f"@{name}:localhost is added to the demo." in first
    assert f"homeserver  {synapse.base_url}" in first
    assert "send !help" in first and "!join HDEV" in first
    found = re.search(r"password    (\S+)", first)
    assert found is not None
    user = await synapse.login(name, found.group(1))
    assert user.user_id == f"@{name}:localhost"

    # Asked again, it says so and gives the same password.
    assert await adduser(synapse.data_dir, name.upper()) == 0
    again = capsys.readouterr().out
    assert f"@{name}:localhost is already in the demo." in again
    assert f"password    {found.group(1)}" in again
    assert synapse.running  # the running server was used, not stopped


async def test_synapses_own_register_tool_works_with_the_demo_config(
    synapse: LocalSynapse,
) -> None:
    name = unique("zoe")
    tool = Path(sys.executable).parent / "register_new_matrix_user"
    proc = await asyncio.create_subprocess_exec(
        str(tool),
        "-c",
        str(synapse.config_path),
        "-u",
        name,
        "-p",
        "a-long-demo-password",
        "--no-admin",
        synapse.base_url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()

    assert proc.returncode == 0, output.decode()
    assert "HMAC incorrect" not in output.decode()
    assert (await synapse.login(name, "a-long-demo-password")).user_id == f"@{name}:localhost"
