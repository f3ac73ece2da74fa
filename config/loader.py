"""Reading ``bbwt_bot.toml`` and turning validation errors into readable messages."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from config.models import Settings

SECRET_KEYS = {
    ("matrix", "password"),
    ("matrix", "access_token"),
    ("matrix", "store_key"),
    ("privacy", "pseudonym_key"),
}
DEFAULT_PATH = Path("bbwt_bot.toml")


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` lists ``(key, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the configuration"]
        lines += [f"  {key}: {message}" for key, message in problems]
        super().__init__("\n".join(lines))


def _dotted(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(item, int):
            element = node[item] if isinstance(node, list) and item < len(node) else None
            code = element.get("code") if isinstance(element, dict) else None
            parts[-1] = f"{parts[-1]}[{item}]" + (f" ({code})" if isinstance(code, str) else "")
            node = element
        else:
            parts.append(item)
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "(top level)"


def load_config(path: Path | str | None = None) -> Settings:
    """Load the configuration file (if it exists) and apply environment overrides.

    Raises :class:`ConfigError` naming every wrong key.
    """
    file = Path(path) if path is not None else DEFAULT_PATH
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(str(file), [("(file)", f"not valid TOML: {exc}")]) from None
    elif path is not None:
        raise ConfigError(str(file), [("(file)", "file not found")])

    problems: list[tuple[str, str]] = []
    for section, key in SECRET_KEYS:
        if isinstance(data.get(section), dict) and key in data[section]:
            env = f"BBWT_{section.upper()}__{key.upper()}"
            problems.append(
                (f"{section}.{key}", f"secrets may not be in the file; set {env} instead")
            )
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append((_dotted(loc, data), message))
        raise ConfigError(str(file), problems) from None
    if problems:
        raise ConfigError(str(file), problems)
    return settings
