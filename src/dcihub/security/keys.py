"""dcihub's own key pairs: created on first start, kept as JWK files, rotated with overlap.

One directory holds one JSON file per key (`<kid>.json`, mode 0600, directory 0700, written
atomically): the private JWK (with `kid` = RFC 7638 thumbprint, `use`, `alg`) and metadata
(`created`, `status`, `retired_at`). There is always one current signing key (ES256 by default;
EdDSA/Ed25519 or RS256 on request) and two current encryption keys, RSA-OAEP-256 (RSA 2048)
and ECDH-ES+A256KW (P-256), so that partners can encrypt with whichever their library offers.

An additional signing key for another algorithm can be added with `ensure_signing_key(alg)`
(e.g. Ed25519, needed to answer a partner that uses the Ed25519 HTTP-signature profile when the
main signing key is ES256). It is published and rotated like the others, but `signing_key()`
(tokens, JWS replies) keeps returning the main key.

`rotate()` retires the current keys and makes new ones. A retired key stays published in the
JWKS, and usable to verify our own tokens and to decrypt, until `overlap` has passed since its
retirement ("retiring"); after that it is "expired": kept on disk for audit, never used.

Several processes may share one key directory: creation and rotation hold an exclusive lock,
and a lookup of an unknown kid re-reads the directory if it changed, so a rotation done by one
process is picked up by the others.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey, import_key

from .errors import KeyStoreError

try:  # POSIX advisory locks; without them creation is still atomic per file.
    import fcntl
except ImportError:  # pragma: no cover - non-POSIX
    fcntl = None  # type: ignore[assignment]

AsymmetricKey = ECKey | OKPKey | RSAKey

SIGNING_ALGS = ("ES256", "EdDSA", "RS256")
ENCRYPTION_ALGS = ("RSA-OAEP-256", "ECDH-ES+A256KW")

CURRENT, RETIRING, EXPIRED = "current", "retiring", "expired"


def load_jwk(data: Mapping[str, Any]) -> AsymmetricKey:
    """Import one JWK (public or private) as a joserfc key; only EC, OKP and RSA are accepted.

    A JWK without `kid` gets its RFC 7638 thumbprint as kid, so lookups by kid always work.
    """
    kty = data.get("kty")
    if kty not in ("EC", "OKP", "RSA"):
        raise ValueError(f"JWK kty {kty!r} is not an asymmetric key type (EC, OKP or RSA)")
    key = import_key(dict(data))
    assert isinstance(key, ECKey | OKPKey | RSAKey)
    key.ensure_kid()
    return key


def as_key(value: AsymmetricKey | Mapping[str, Any]) -> AsymmetricKey:
    """Accept a joserfc key or a JWK dict (parsed on each call: cache key objects instead)."""
    if isinstance(value, ECKey | OKPKey | RSAKey):
        return value
    if isinstance(value, Mapping):
        return load_jwk(value)
    raise TypeError(f"expected a JWK dict or a joserfc EC/OKP/RSA key, got {type(value).__name__}")


def generate_key(use: str, alg: str) -> AsymmetricKey:
    """A new private key for `use` ("sig"|"enc") and `alg` (ES256, EdDSA, RS256, RSA-OAEP-256,
    ECDH-ES+A256KW) with `use`, `alg` and `kid` (RFC 7638 thumbprint) set."""
    params: dict[str, Any] = {"use": use, "alg": alg}
    key: AsymmetricKey
    if alg == "ES256" or alg == "ECDH-ES+A256KW":
        key = ECKey.generate_key("P-256", parameters=params, private=True)  # type: ignore[arg-type]
    elif alg == "EdDSA":
        key = OKPKey.generate_key("Ed25519", parameters=params, private=True)  # type: ignore[arg-type]
    elif alg in ("RS256", "RSA-OAEP-256"):
        key = RSAKey.generate_key(2048, parameters=params, private=True)  # type: ignore[arg-type]
    else:
        raise ValueError(f"unsupported key algorithm {alg!r}")
    key.ensure_kid()
    return key


@dataclass(frozen=True)
class KeyInfo:
    """One row of `KeyManager.list_keys()`."""

    kid: str
    use: str
    alg: str
    kty: str
    created: datetime
    status: str  # current | retiring | expired
    retired_at: datetime | None


@dataclass
class _StoredKey:
    key: AsymmetricKey
    created: datetime
    retired_at: datetime | None
    path: Path
    extra: bool = False  # an additional signing key (ensure_signing_key), not the main one

    @property
    def use(self) -> str:
        return str(self.key.get("use"))

    @property
    def alg(self) -> str:
        return str(self.key.alg)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_dt(value: str) -> datetime:
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class KeyManager:
    """Owns the registry's key pairs in `key_dir`. Call `load_or_create()` once at start-up."""

    def __init__(
        self,
        key_dir: Path | str,
        overlap: timedelta = timedelta(days=7),
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        *,
        signing_alg: str = "ES256",
    ) -> None:
        if signing_alg not in SIGNING_ALGS:
            raise ValueError(f"signing_alg must be one of {', '.join(SIGNING_ALGS)}")
        self.key_dir = Path(key_dir)
        self.overlap = overlap
        self.now = now
        self.signing_alg = signing_alg
        self._keys: dict[str, _StoredKey] = {}
        self._dir_mtime: int | None = None
        self._mutex = threading.Lock()

    # -- loading and creation -------------------------------------------------------------

    def load_or_create(self) -> KeyManager:
        """Load the key directory, creating it and any missing current key. Returns self."""
        self._ensure_dir()
        with self._locked():
            self._load()
            self._create_missing()
            self._load()
        return self

    def reload(self) -> None:
        """Re-read the key directory (e.g. after another process rotated)."""
        with self._mutex:
            self._load()

    def rotate(self) -> list[KeyInfo]:
        """Retire every current key and create new current keys. Returns the new keys."""
        self._ensure_dir()
        with self._locked():
            self._load()
            now = self.now()
            extra_algs = set()
            for stored in list(self._keys.values()):
                if stored.retired_at is None:
                    stored.retired_at = now
                    self._write(stored)
                    if stored.extra:
                        extra_algs.add(stored.alg)
            created = self._create_missing()
            self._load()
            for alg in sorted(extra_algs):  # unless the new main key has that algorithm
                if not any(
                    s.retired_at is None and s.use == "sig" and s.alg == alg
                    for s in self._keys.values()
                ):
                    created.add(self._create_extra(alg))
            self._load()
        return [info for info in self.list_keys() if info.kid in created]

    # -- queries ----------------------------------------------------------------------------

    def list_keys(self) -> list[KeyInfo]:
        rows = [
            KeyInfo(
                kid=str(s.key.kid),
                use=s.use,
                alg=s.alg,
                kty=s.key.key_type,
                created=s.created,
                status=self._status(s),
                retired_at=s.retired_at,
            )
            for s in self._keys.values()
        ]
        return sorted(rows, key=lambda r: (r.status != CURRENT, r.use, -r.created.timestamp()))

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """`{"keys": [...]}` for `/.well-known/jwks.json`: current and retiring public keys."""
        return {"keys": [s.key.as_dict(private=False) for s in self._usable()]}

    def private_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The current private keys as a JWK set (for the demo partner's key file only)."""
        return {
            "keys": [s.key.as_dict(private=True) for s in self._usable() if s.retired_at is None]
        }

    def signing_key(self, alg: str | None = None) -> AsymmetricKey:
        """The current main signing key (private; `kid`, `alg` and `use` set), or the current
        signing key for `alg` (main or additional)."""
        for stored in self._usable():
            if (
                stored.retired_at is None
                and stored.use == "sig"
                and (stored.alg == alg if alg else not stored.extra)
            ):
                return stored.key
        wanted = f"{alg} signing key" if alg else "signing key"
        raise KeyStoreError(f"no current {wanted} in {self.key_dir}: call load_or_create()")

    def ensure_signing_key(self, alg: str) -> AsymmetricKey:
        """The current signing key for `alg`, created (as an additional key) if there is none."""
        if alg not in SIGNING_ALGS:
            raise ValueError(f"signing alg must be one of {', '.join(SIGNING_ALGS)}")
        try:
            return self.signing_key(alg)
        except KeyStoreError:
            pass
        self._ensure_dir()
        with self._locked():
            self._load()
            if not any(
                s.retired_at is None and s.use == "sig" and s.alg == alg
                for s in self._keys.values()
            ):
                self._create_extra(alg)
                self._load()
        return self.signing_key(alg)

    def encryption_key(self, alg: str = "ECDH-ES+A256KW") -> AsymmetricKey:
        """Our current encryption key for `alg` (private; publish only its public part)."""
        for stored in self._usable():
            if stored.retired_at is None and stored.use == "enc" and stored.alg == alg:
                return stored.key
        raise KeyStoreError(f"no current {alg} encryption key in {self.key_dir}")

    def verification_key(self, kid: str | None) -> AsymmetricKey | None:
        """One of our signing keys (current or retiring) by kid, e.g. to verify our own tokens."""
        return self._lookup(kid, "sig")

    def decryption_key(self, kid: str | None) -> AsymmetricKey | None:
        """One of our encryption keys (current or retiring) by kid; None if unknown or expired."""
        return self._lookup(kid, "enc")

    # -- internals -------------------------------------------------------------------------

    def _status(self, stored: _StoredKey) -> str:
        if stored.retired_at is None:
            return CURRENT
        return RETIRING if self.now() < stored.retired_at + self.overlap else EXPIRED

    def _usable(self) -> Iterator[_StoredKey]:
        ordered = sorted(self._keys.values(), key=lambda s: s.created, reverse=True)
        return (s for s in ordered if self._status(s) != EXPIRED)

    def _lookup(self, kid: str | None, use: str) -> AsymmetricKey | None:
        if kid is None:
            return None
        stored = self._keys.get(kid)
        if stored is None and self._changed_on_disk():
            self.reload()
            stored = self._keys.get(kid)
        if stored is None or stored.use != use or self._status(stored) == EXPIRED:
            return None
        return stored.key

    def _changed_on_disk(self) -> bool:
        try:
            return self.key_dir.stat().st_mtime_ns != self._dir_mtime
        except OSError:
            return False

    def _ensure_dir(self) -> None:
        if not self.key_dir.exists():
            self.key_dir.mkdir(parents=True, mode=0o700)
            os.chmod(self.key_dir, 0o700)
        mode = self.key_dir.stat().st_mode
        if mode & 0o022:
            raise KeyStoreError(
                f"key directory {self.key_dir} is writable by group or others "
                f"(mode {oct(mode & 0o777)}); anyone could replace the keys: "
                f"run `chmod 700 {self.key_dir}`"
            )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._mutex:
            if fcntl is None:  # pragma: no cover
                yield
                return
            fd = os.open(self.key_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)

    def _load(self) -> None:
        keys: dict[str, _StoredKey] = {}
        mtime = self.key_dir.stat().st_mtime_ns
        for path in sorted(self.key_dir.glob("*.json")):
            keys_entry = self._read(path)
            keys[str(keys_entry.key.kid)] = keys_entry
        self._keys = keys
        self._dir_mtime = mtime

    def _read(self, path: Path) -> _StoredKey:
        mode = path.stat().st_mode
        if mode & 0o077:
            raise KeyStoreError(
                f"private key file {path} is readable by group or others (mode "
                f"{oct(mode & 0o777)}); refusing to use it: run `chmod 600 {path}` "
                f"(and consider the key compromised if others could read it)"
            )
        try:
            doc = json.loads(path.read_text("utf-8"))
            key = load_jwk(doc["jwk"])
            if not key.is_private:
                raise ValueError("the file holds a public key only")
            if key.get("use") not in ("sig", "enc") or not key.alg:
                raise ValueError("the JWK lacks `use` (sig|enc) or `alg`")
            if key.kid != key.thumbprint():
                raise ValueError("its kid is not the RFC 7638 thumbprint of the key")
            retired = doc.get("retired_at")
            return _StoredKey(
                key=key,
                created=_parse_dt(doc["created"]),
                retired_at=_parse_dt(retired) if retired else None,
                path=path,
                extra=doc.get("role") == "extra",
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise KeyStoreError(f"key file {path} is not a valid dcihub key file: {exc}") from exc

    def _create_missing(self) -> set[str]:
        current = [s for s in self._keys.values() if s.retired_at is None]
        wanted: list[tuple[str, str]] = []
        if not any(s.use == "sig" and not s.extra for s in current):
            wanted.append(("sig", self.signing_alg))
        for alg in ENCRYPTION_ALGS:
            if not any(s.use == "enc" and s.alg == alg for s in current):
                wanted.append(("enc", alg))
        created: set[str] = set()
        for use, alg in wanted:
            key = generate_key(use, alg)
            stored = _StoredKey(key, self.now(), None, self.key_dir / f"{key.kid}.json")
            self._write(stored)
            created.add(str(key.kid))
        return created

    def _create_extra(self, alg: str) -> str:
        key = generate_key("sig", alg)
        self._write(_StoredKey(key, self.now(), None, self.key_dir / f"{key.kid}.json", extra=True))
        return str(key.kid)

    def _write(self, stored: _StoredKey) -> None:
        doc = {
            "jwk": stored.key.as_dict(private=True),
            "created": _iso(stored.created),
            "role": "extra" if stored.extra else "main",
            "status": "retired" if stored.retired_at else "current",
            "retired_at": _iso(stored.retired_at) if stored.retired_at else None,
        }
        _atomic_write(stored.path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` with mode 0600 via a temporary file and rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
