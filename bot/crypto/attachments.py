"""Files in encrypted rooms.

An encrypting client uploads a file encrypted (AES-CTR) and puts the key in the message,
as a ``file`` object (``url``, ``key``, ``iv``, ``hashes``, ``v``) instead of a plain
``url``; downloading ``file.url`` gives ciphertext. The bot keeps such objects as they are:

* to an encrypted room it sends them unchanged (the message itself is encrypted, so the
  key travels only to the room's members);
* to an unencrypted room it must not (the key would be in the clear): it downloads the
  file, decrypts it and uploads a plain copy, or, if it cannot, says why.

Files the bot makes itself (calendars, exports) are encrypted for an encrypted room and
plain for the others. No key, IV or hash is ever logged.
"""

from __future__ import annotations

import io
from typing import Any

from nio import AsyncClient, DownloadError, UploadResponse
from nio.crypto.attachments import decrypt_attachment, encrypt_attachment

FILE_KEYS = ("url", "key", "iv", "hashes", "v")


class AttachmentError(RuntimeError):
    """A file could not be fetched, opened or stored (the message says why, no secrets)."""


def is_file_object(value: Any) -> bool:
    """Is this the ``file`` object of an encrypted attachment?"""
    return isinstance(value, dict) and all(key in value for key in FILE_KEYS)


async def download(client: AsyncClient, content: dict[str, Any]) -> bytes:
    """The plain bytes of the file a message carries (``url`` or encrypted ``file``)."""
    file = content.get("file")
    url = file.get("url") if isinstance(file, dict) else content.get("url")
    if not isinstance(url, str) or not url.startswith("mxc://"):
        raise AttachmentError("the message has no download address")
    resp = await client.download(mxc=url)
    if isinstance(resp, DownloadError):
        raise AttachmentError(f"the homeserver did not give the file ({resp.status_code})")
    body = bytes(resp.body)
    if not isinstance(file, dict):
        return body
    if file.get("v") != "v2" or not is_file_object(file):
        raise AttachmentError("the file is encrypted in a way I do not know")
    try:
        key = file["key"]["k"]
        return bytes(decrypt_attachment(body, key, file["hashes"]["sha256"], file["iv"]))
    except Exception as exc:  # a wrong hash or key: never repeat the values
        raise AttachmentError(f"the file could not be decrypted ({type(exc).__name__})") from None


async def upload(
    client: AsyncClient, data: bytes, *, filename: str, mimetype: str, encrypted: bool
) -> dict[str, Any]:
    """Upload ``data``; returns the message fields that point at it: ``{"file": …}`` for
    an encrypted room, ``{"url": …}`` otherwise."""
    if encrypted:
        ciphertext, keys = encrypt_attachment(data)
        resp, _ = await client.upload(
            io.BytesIO(ciphertext),
            content_type="application/octet-stream",
            filename=None,  # the name is in the encrypted message only
            filesize=len(ciphertext),
        )
    else:
        resp, _ = await client.upload(
            io.BytesIO(data), content_type=mimetype, filename=filename, filesize=len(data)
        )
    if not isinstance(resp, UploadResponse):
        raise AttachmentError(f"the upload failed ({getattr(resp, 'status_code', resp)})")
    if encrypted:
        return {"file": {"url": resp.content_uri, **keys, "mimetype": mimetype}}
    return {"url": resp.content_uri}


async def plain_copy(client: AsyncClient, content: dict[str, Any]) -> dict[str, Any]:
    """A message carrying an encrypted ``file``, turned into one with a plain ``url`` for an
    unencrypted room (the file is downloaded, decrypted and uploaded again)."""
    info = content.get("info") if isinstance(content.get("info"), dict) else {}
    mimetype = str((info or {}).get("mimetype") or "application/octet-stream")
    name = str(content.get("filename") or content.get("body") or "file")
    data = await download(client, content)
    copy = {k: v for k, v in content.items() if k != "file"}
    copy.update(await upload(client, data, filename=name, mimetype=mimetype, encrypted=False))
    return copy
