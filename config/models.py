"""Pydantic models of the configuration file."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

USER_ID_RE = re.compile(r"^@[a-z0-9._=\-/+]+:[A-Za-z0-9.\-]+(:\d+)?$")
ROOM_REF_RE = re.compile(r"^[#!][^:\s]+(:[A-Za-z0-9.\-]+(:\d+)?)?$")
COP_CODE_RE = re.compile(r"^[A-Z][A-Z0-9]{1,11}$")
DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdwy]?)\s*$")
DAYS_PER_YEAR = 366
"""A year in a duration (``5y``) counts 366 days, so that a period written in years is never
shorter than that many calendar years (retention periods must last at least that long)."""
_UNIT_SECONDS = {
    "": 1,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": DAYS_PER_YEAR * 86400,
}

AUTHORITY_TYPES = (
    "state-authority",
    "regional-authority",
    "local-authority",
    "body-governed-by-public-law",
    "association-of-authorities",
    "central-purchasing-body",
)


def _parse_duration(value: Any) -> Any:
    """Accept ``90``, ``"90s"``, ``"15m"``, ``"24h"``, ``"2d"``, ``"3w"``, ``"5y"`` as well as
    timedeltas (see :data:`DAYS_PER_YEAR`)."""
    if isinstance(value, str):
        match = DURATION_RE.match(value)
        if not match:
            raise ValueError("use a number with a unit, e.g. 90s, 15m, 24h, 2d, 3w or 5y")
        return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    return value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]


def check_user_id(value: str) -> str:
    if not USER_ID_RE.match(value):
        raise ValueError(f"{value!r} is not a Matrix user ID like @name:example.org")
    return value


def check_room_ref(value: str) -> str:
    if value and not ROOM_REF_RE.match(value):
        raise ValueError("must be a room alias (#name:server) or room ID (!id:server)")
    return value


def upper_keys(value: Any, pattern: re.Pattern[str], what: str) -> Any:
    """A table's keys in upper case (``sek`` -> ``SEK``), each matching ``pattern``;
    ``what`` names a good key in the error, e.g. "a CoP code such as HDEV"."""
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        upper = str(key).strip().upper()
        if not pattern.match(upper):
            raise ValueError(f"{key!r} is not {what}")
        out[upper] = item
    return out


def only_known(values: list[str], known: tuple[str, ...], what: str) -> list[str]:
    """``values`` if each is one of ``known``; else an error naming ``what`` they are."""
    unknown = [value for value in values if value not in known]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(known)}")
    return values


def check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not an IANA time zone such as Europe/Brussels") from None
    return value


UserId = Annotated[str, BeforeValidator(lambda v: check_user_id(str(v).strip()))]
TimeZoneName = Annotated[str, BeforeValidator(lambda v: check_timezone(str(v).strip()))]
RoomRef = Annotated[str, AfterValidator(check_room_ref)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MatrixConfig(_Section):
    homeserver: str = "http://127.0.0.1:8008"
    user_id: UserId = "@bbwt:localhost"
    device_name: str = "bbwt-bot"
    command_prefix: str = Field("!", min_length=1, max_length=3)
    offline_window: Duration = timedelta(hours=24)
    sync_timeout: Duration = timedelta(seconds=30)
    alias_prefix: str = Field("bbwt", pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    send_retries: int = Field(5, ge=0, le=50)
    password: SecretStr | None = None
    access_token: SecretStr | None = None
    store_key: SecretStr | None = None
    """Encrypts the bot's secrets at rest (Olm/Megolm state, cross-signing keys, access
    token). Required to run; changing it makes the stored keys unreadable."""
    encrypt_rooms: bool = True
    """Rooms the bot creates (CoP rooms, the management room, direct chats) are encrypted."""
    key_wait: Duration = timedelta(seconds=30)
    """How long to wait for the key of a message the bot cannot decrypt before telling the
    person what to check."""

    @field_validator("store_key")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError(
                "must be at least 16 characters; make one with: openssl rand -base64 32"
            )
        return value

    @field_validator("homeserver")
    @classmethod
    def _homeserver_is_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("must be an http(s) URL such as https://matrix.example.org")
        return value.rstrip("/")

    @property
    def server_name(self) -> str:
        return self.user_id.split(":", 1)[1]


class DatabaseConfig(_Section):
    url: str = "sqlite+aiosqlite:///bbwt_bot.db"

    @field_validator("url")
    @classmethod
    def _supported_driver(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                "(the bot only uses asynchronous drivers)"
            )
        return value


class HttpConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    public_url: str = ""
    """Address under which the HTTP server is reachable by members (calendar feeds)."""


EventLoop = Literal["uvloop", "asyncio"]


class ProcessConfig(_Section):
    event_loop: EventLoop = "uvloop"
    """The event loop the process runs on: uvloop (libuv's, less CPU per round trip to the
    database and the homeserver) or Python's own asyncio loop. Without uvloop installed the
    bot runs on asyncio whatever this says."""
    group_seconds: float = Field(0.02, ge=0, le=60)
    """How long a group of a room's backlog may run in one transaction before it commits
    what it has and goes on in the next (seconds): the answers handled so far wait that
    long at most, and on SQLite so do other writers."""


class SecretariatConfig(_Section):
    admins: list[UserId] = Field(default_factory=list)
    timezone: TimeZoneName = "Europe/Brussels"
    management_room: RoomRef = ""
    """Alias or ID of an existing management room; empty means the bot creates one."""


class CopConfig(_Section):
    code: str
    name: str = Field(min_length=1)
    description: str = ""
    room: RoomRef = ""
    """Alias or ID of an existing room; empty means the bot creates ``#<prefix>-<code>``."""
    moderators: list[UserId] = Field(default_factory=list)
    timezone: TimeZoneName | None = None

    @field_validator("code", mode="before")
    @classmethod
    def _code_upper(cls, value: Any) -> str:
        code = str(value).strip().upper()
        if not COP_CODE_RE.match(code):
            raise ValueError("must be 2 to 12 letters or digits, starting with a letter")
        return code


# Sections of command families live in config/<family>.py and import _Section from here, so
# they are imported only now, after the shared pieces above exist (no import cycle).
from config.claims import ClaimsConfig  # noqa: E402
from config.digest import DigestConfig  # noqa: E402
from config.events import EventsConfig  # noqa: E402
from config.privacy import PrivacyConfig  # noqa: E402


class Settings(BaseSettings):
    """The whole configuration; variables ``BBWT_<SECTION>__<KEY>`` override the file."""

    model_config = SettingsConfigDict(
        env_prefix="BBWT_",
        env_nested_delimiter="__",
        extra="forbid",
        nested_model_default_partial_update=True,
    )

    matrix: MatrixConfig = Field(default_factory=MatrixConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    secretariat: SecretariatConfig = Field(default_factory=SecretariatConfig)
    cops: list[CopConfig] = Field(default_factory=list)
    digest: DigestConfig = Field(default_factory=DigestConfig)
    claims: ClaimsConfig = Field(default_factory=ClaimsConfig)
    events: EventsConfig = Field(default_factory=EventsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    process: ProcessConfig = Field(default_factory=ProcessConfig)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file's contents arrive as init values; the environment overrides them.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        codes = [cop.code for cop in self.cops]
        duplicates = sorted({code for code in codes if codes.count(code) > 1})
        if duplicates:
            raise ValueError(f"CoP codes must be unique; repeated: {', '.join(duplicates)}")
        if self.privacy.inbound_retention <= self.matrix.offline_window:
            raise ValueError(
                "privacy.inbound_retention must be longer than matrix.offline_window: a "
                "command is only forgotten once it is too old to be carried out again"
            )
        return self

    def cop(self, code: str) -> CopConfig | None:
        code = code.upper()
        return next((cop for cop in self.cops if cop.code == code), None)

    def cop_timezone(self, code: str) -> str:
        cop = self.cop(code)
        return (cop.timezone if cop and cop.timezone else None) or self.secretariat.timezone
