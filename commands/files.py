"""Files in messages, plain or encrypted.

An encrypting client sends a file as a ``file`` object (``url``, ``key``, ``iv``,
``hashes``, ``v``) instead of a plain ``url``: the file on the homeserver is ciphertext and
the key travels in the (encrypted) message. Receipts and intel files keep that object, so
the bot can show the file again to someone entitled to it; the sender then passes it on in
an encrypted room, or uploads a decrypted copy for an unencrypted one. The object holds a
key: it is never put in a log line or an export.
"""

from __future__ import annotations

from typing import Any

_FIELDS = ("url", "key", "iv", "hashes", "v", "mimetype")


def encrypted_file(content: dict[str, Any]) -> dict[str, Any] | None:
    """The ``file`` object of an encrypted upload (only its known fields), or None."""
    file = content.get("file")
    if not isinstance(file, dict):
        return None
    url, key, hashes = file.get("url"), file.get("key"), file.get("hashes")
    if not (isinstance(url, str) and url.startswith("mxc://")):
        return None
    if not (isinstance(key, dict) and isinstance(hashes, dict) and isinstance(file.get("iv"), str)):
        return None
    return {name: file[name] for name in _FIELDS if name in file}


def file_url(content: dict[str, Any]) -> str | None:
    """Where the file is (``mxc://``), plain or encrypted; None when there is none."""
    found = encrypted_file(content)
    url = found["url"] if found is not None else content.get("url")
    return url if isinstance(url, str) and url.startswith("mxc://") else None


def pointing_at(url: str | None, file_object: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of a message that show a stored file again."""
    return {"file": dict(file_object)} if file_object else {"url": url}
