"""Secrets at rest are sealed with keys derived from the store key."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from bot.crypto.cross_signing import CrossSigningKeys, signed_by
from bot.crypto.keys import StoreKeyError, StoreKeys

KEY = SecretStr("a-long-random-store-key-for-tests")


def test_a_sealed_secret_opens_only_with_the_same_store_key() -> None:
    keys = StoreKeys(KEY)
    sealed = keys.seal({"master_seed": "very secret"})

    assert "very secret" not in sealed
    assert StoreKeys(KEY).unseal(sealed) == {"master_seed": "very secret"}
    with pytest.raises(StoreKeyError, match="was the key changed"):
        StoreKeys(SecretStr("another-store-key-entirely")).unseal(sealed)


def test_the_derived_keys_never_show_in_a_repr_or_equal_the_store_key() -> None:
    keys = StoreKeys(KEY)

    assert "hidden" in repr(keys)
    assert KEY.get_secret_value() not in keys.pickle_key
    assert StoreKeys(KEY).pickle_key == keys.pickle_key  # stable across restarts


def test_the_self_signing_key_is_signed_by_the_master_key_and_signs_a_device() -> None:
    keys = CrossSigningKeys.generate()
    user = "@bot:example.org"
    ssk = keys.self_signing_key_json(user)

    assert signed_by(ssk, user, keys.master_public)
    assert not signed_by(ssk, user, CrossSigningKeys.generate().master_public)
    assert CrossSigningKeys.from_secret(keys.as_secret()) == keys
    assert keys.master_seed not in repr(keys)
