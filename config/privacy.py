"""``[privacy]``: who answers for the data (the privacy notice of ``!privacy``) and how long
the bot keeps what it stores (the daily retention job).

Travel claims are kept for ``claims.retention`` (in ``[claims]``): they are financial records.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field, SecretStr, field_validator

from config.models import DAYS_PER_YEAR, Duration, _Section

DEFAULT_CONTROLLER = (
    "The Secretariat of Big Buyers Working Together (BBWT), a project funded by the "
    "European Commission, decides how this data is used. Questions about your data: write "
    "to the Secretariat, or ask in a direct message with me."
)


class PrivacyConfig(_Section):
    controller: str = Field(DEFAULT_CONTROLLER, min_length=1, max_length=2000)
    """Who the controller is and how to reach them (shown by ``!privacy``)."""
    inbound_retention: Duration = timedelta(days=30)
    """Commands and events the bot has handled lose their text (and sender) after this."""
    outbox_retention: Duration = timedelta(days=7)
    """Messages and files the bot has sent lose their stored copy after this."""
    audit_retention: Duration = timedelta(days=2 * DAYS_PER_YEAR)
    """Audit-log entries are deleted this long after they were written."""
    member_retention: Duration = timedelta(days=DAYS_PER_YEAR)
    """People who have left (or never joined) are erased after this long without being a
    member, an applicant, a moderator or a guest of an event to come."""
    pseudonym_key: SecretStr | None = None
    """Secret of the pseudonyms of erased people (``BBWT_PRIVACY__PSEUDONYM_KEY`` only);
    without it the bot makes one and keeps it in its database."""

    @field_validator("inbound_retention", "outbox_retention", "audit_retention", "member_retention")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        if value < timedelta(days=1):
            raise ValueError("must be at least 1d (the retention job runs once a day)")
        return value

    @field_validator("pseudonym_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (e.g. openssl rand -hex 32)")
        return value
