"""A smaller set of end-to-end tests on a homeserver whose new rooms are version 11.

Synapse 1.163 defaults to room version 12, which every other end-to-end test meets; many
servers still default to 11, where a room's creator is an ordinary power-level entry. The
tests imported here run once more, against the ``synapse_v11`` server.
"""

from __future__ import annotations

import pytest

from bot.devserver import LocalSynapse
from tests.e2e.test_foundation import (
    test_a_restart_answers_nothing_twice_and_catches_up_on_what_came_in_meanwhile,
    test_help_in_a_direct_chat_lists_the_commands,
)
from tests.e2e.test_membership import (
    test_moderators_reject_approve_with_a_reaction_and_remove_and_intruders_go,
)
from tests.e2e.test_rooms import (
    test_cop_rooms_give_moderators_50_and_admins_100_on_the_servers_room_version,
)

__all__ = [
    "test_a_restart_answers_nothing_twice_and_catches_up_on_what_came_in_meanwhile",
    "test_cop_rooms_give_moderators_50_and_admins_100_on_the_servers_room_version",
    "test_help_in_a_direct_chat_lists_the_commands",
    "test_moderators_reject_approve_with_a_reaction_and_remove_and_intruders_go",
]


@pytest.fixture(scope="session")
def synapse(synapse_v11: LocalSynapse) -> LocalSynapse:
    """Every fixture of this module (people, bots) uses the version-11 server."""
    return synapse_v11
