"""KeyManager: creation, file permissions, JWKS contents, rotation with overlap."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dcihub.security.errors import KeyStoreError
from dcihub.security.keys import KeyManager, load_jwk

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2025, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def km(tmp_path: Path, clock: Clock) -> KeyManager:
    return KeyManager(tmp_path / "keys", overlap=timedelta(days=7), now=clock).load_or_create()


def test_first_start_creates_keys_with_safe_permissions(km: KeyManager) -> None:
    assert stat.S_IMODE(km.key_dir.stat().st_mode) == 0o700
    files = sorted(km.key_dir.glob("*.json"))
    assert len(files) == 3  # ES256 signing + RSA-OAEP-256 + ECDH-ES+A256KW
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = json.loads(path.read_text())
        assert doc["status"] == "current" and doc["created"].endswith("Z")
        assert path.name == f"{doc['jwk']['kid']}.json"
    rows = {(r.use, r.alg, r.status) for r in km.list_keys()}
    assert rows == {
        ("sig", "ES256", "current"),
        ("enc", "RSA-OAEP-256", "current"),
        ("enc", "ECDH-ES+A256KW", "current"),
    }
    assert not list(km.key_dir.glob(".tmp-*")), "no temporary files left behind"


def test_kid_is_rfc7638_thumbprint_and_jwks_is_public_only(km: KeyManager) -> None:
    jwks = km.public_jwks()
    assert len(jwks["keys"]) == 3
    for jwk in jwks["keys"]:
        assert {"kty", "kid", "use", "alg"} <= jwk.keys()
        assert not PRIVATE_MEMBERS & jwk.keys()
        assert load_jwk(jwk).thumbprint() == jwk["kid"]
    assert km.signing_key().is_private
    assert km.signing_key().kid in {k["kid"] for k in jwks["keys"]}


def test_restart_loads_the_same_keys(km: KeyManager, clock: Clock) -> None:
    again = KeyManager(km.key_dir, now=clock).load_or_create()
    assert again.public_jwks() == km.public_jwks()
    assert again.signing_key().kid == km.signing_key().kid


@pytest.mark.parametrize("alg,kty", [("EdDSA", "OKP"), ("RS256", "RSA"), ("ES256", "EC")])
def test_signing_algorithm_options(tmp_path: Path, alg: str, kty: str) -> None:
    km = KeyManager(tmp_path / "k", signing_alg=alg).load_or_create()
    key = km.signing_key()
    assert key.alg == alg and key.key_type == kty and key.get("use") == "sig"


def test_unknown_signing_algorithm_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="signing_alg"):
        KeyManager(tmp_path, signing_alg="HS256")


def test_refuses_group_readable_private_key_file(km: KeyManager, clock: Clock) -> None:
    path = next(km.key_dir.glob("*.json"))
    os.chmod(path, 0o640)
    with pytest.raises(KeyStoreError, match=r"readable by group or others.*chmod 600"):
        KeyManager(km.key_dir, now=clock).load_or_create()


def test_refuses_world_readable_private_key_file(km: KeyManager, clock: Clock) -> None:
    path = next(km.key_dir.glob("*.json"))
    os.chmod(path, 0o604)
    with pytest.raises(KeyStoreError, match=str(path.name)):
        KeyManager(km.key_dir, now=clock).load_or_create()


def test_refuses_group_writable_key_directory(km: KeyManager, clock: Clock) -> None:
    os.chmod(km.key_dir, 0o770)
    with pytest.raises(KeyStoreError, match="chmod 700"):
        KeyManager(km.key_dir, now=clock).load_or_create()


def test_refuses_a_tampered_key_file(km: KeyManager, clock: Clock) -> None:
    path = next(km.key_dir.glob("*.json"))
    doc = json.loads(path.read_text())
    doc["jwk"]["kid"] = "not-the-thumbprint"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyStoreError, match="thumbprint"):
        KeyManager(km.key_dir, now=clock).load_or_create()


def test_rotation_keeps_old_keys_during_overlap(km: KeyManager, clock: Clock) -> None:
    old_sig = km.signing_key()
    old_enc = km.encryption_key("RSA-OAEP-256")
    clock.advance(days=30)
    new = km.rotate()
    assert {(k.use, k.alg) for k in new} == {
        ("sig", "ES256"),
        ("enc", "RSA-OAEP-256"),
        ("enc", "ECDH-ES+A256KW"),
    }
    assert km.signing_key().kid != old_sig.kid
    statuses = {r.kid: r.status for r in km.list_keys()}
    assert statuses[old_sig.kid] == "retiring"
    published = {k["kid"] for k in km.public_jwks()["keys"]}
    assert len(published) == 6 and old_sig.kid in published
    # still usable for verification and decryption while retiring
    assert km.verification_key(old_sig.kid) is not None
    assert km.decryption_key(old_enc.kid) is not None
    # private_jwks only carries the current keys
    assert old_sig.kid not in {k["kid"] for k in km.private_jwks()["keys"]}

    clock.advance(days=7, seconds=1)
    statuses = {r.kid: r.status for r in km.list_keys()}
    assert statuses[old_sig.kid] == "expired"
    assert old_sig.kid not in {k["kid"] for k in km.public_jwks()["keys"]}
    assert km.verification_key(old_sig.kid) is None
    assert km.decryption_key(old_enc.kid) is None
    assert len(km.public_jwks()["keys"]) == 3


def test_rotation_by_another_process_is_picked_up(km: KeyManager, clock: Clock) -> None:
    other = KeyManager(km.key_dir, now=clock).load_or_create()
    clock.advance(seconds=5)
    other.rotate()
    new_enc = other.encryption_key()
    # km has not reloaded yet, but an unknown kid triggers a re-read of the directory
    assert km.decryption_key(new_enc.kid) is not None


def test_decryption_key_does_not_return_signing_keys(km: KeyManager) -> None:
    assert km.decryption_key(km.signing_key().kid) is None
    assert km.verification_key(km.encryption_key().kid) is None
    assert km.decryption_key(None) is None
    assert km.decryption_key("unknown") is None


def test_private_jwks_is_loadable_by_jwcrypto(km: KeyManager) -> None:
    from jwcrypto import jwk

    jwks = jwk.JWKSet.from_json(json.dumps(km.private_jwks()))
    assert all(k.has_private for k in jwks["keys"])
