"""`ClientSettings`: everything a client needs to talk to one registry.

Settings come from arguments, a file (YAML or JSON), environment variables or a `dcihub demo`
directory, and can be layered (a CLI reads the file, then the environment, then its flags):

    ClientSettings.from_demo("crvs", "dcihub-demo/demo.json")
    ClientSettings.from_file("crvs.yaml")                # the same member names as below
    ClientSettings.from_env()                            # DCIHUB_CLIENT_BASE_URL, ...
    settings.merged(encrypt=True, timeout=None)          # None leaves a setting as it was

A file's relative `keys_file` is relative to the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from dcihub.standard.envelope import describe_validation_error
from dcihub.standard.profiles import PROFILES

from .errors import ConfigurationError

__all__ = ["ClientSettings", "ENV_PREFIX"]

ENV_PREFIX = "DCIHUB_CLIENT_"
SignatureProfile = Literal["jws-detached", "jws-compact", "http-sig-ed25519"]


class ClientSettings(BaseModel):
    """How to reach one registry and who the client is there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(
        description="base URL of the registry's DCI API: <base_url>/registry/sync/search"
    )
    registry: str | None = Field(
        None, description="the dcihub profile of the registry (crvs, dr, ibr, ...), if any"
    )
    sender_id: str = Field(description="the client's DCI sender_id at the registry")
    receiver_id: str | None = Field(
        None, description="the registry's id (header.receiver_id; the sender of its callbacks)"
    )
    token_url: str | None = Field(None, description="OAuth2 token endpoint (client_credentials)")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    token: SecretStr | None = Field(None, description="a fixed bearer token instead of OAuth2")
    keys_file: Path | None = Field(None, description="the client's private JWK set (a file)")
    keys: dict[str, Any] | None = Field(None, description="the client's private JWK set")
    jwks_url: str | None = Field(None, description="the registry's JWKS (verify, encrypt)")
    registry_jwks: dict[str, Any] | None = Field(None, description="the registry's JWKS inline")
    signature_profile: SignatureProfile = "jws-detached"
    sign: bool = Field(True, description="sign requests (only some partners may send unsigned)")
    encrypt: bool = Field(False, description="encrypt request messages to the registry")
    verify_replies: bool = Field(True, description="require and verify reply signatures")
    callback_url: str | None = Field(
        None, description="where the client's callback receiver is reachable (its base URL)"
    )
    timeout: float = Field(30.0, gt=0, description="seconds for one HTTP exchange")
    locale: str = "eng"
    token_leeway_seconds: float = Field(
        30.0, ge=0, description="renew the access token this long before it expires"
    )
    jwks_refetch_seconds: float = Field(
        30.0, ge=0, description="refetch the registry's JWKS on an unknown kid at most this often"
    )

    @field_validator("base_url", "token_url", "jwks_url", "callback_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().rstrip("/")
        if not text.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return text

    @field_validator("registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        return value.strip().lower() if value else None

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def build(cls, data: Mapping[str, Any], source: str = "settings") -> ClientSettings:
        """Validate `data`, naming the problem in one line (ConfigurationError)."""
        values = {k: v for k, v in data.items() if v is not None}
        if "registry" not in values and "base_url" in values:
            guess = str(values["base_url"]).rstrip("/").rsplit("/", 1)[-1].lower()
            if guess in PROFILES:
                values["registry"] = guess
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(
                f"{source}: {describe_validation_error(exc, '')}".replace(": .", ": ")
            ) from None

    @classmethod
    def from_demo(
        cls, registry: str, demo_json_path: str | Path = "dcihub-demo/demo.json", **overrides: Any
    ) -> ClientSettings:
        """Settings for `registry` of a `dcihub demo`, from its demo.json."""
        path = Path(demo_json_path)
        info = _read_json(path, "demo file")
        registries = info.get("registries") or {}
        if registry not in registries:
            raise ConfigurationError(
                f"{path} has no registry {registry!r}; it serves: {', '.join(registries) or 'none'}"
            )
        data: dict[str, Any] = {
            "base_url": registries[registry],
            "registry": registry,
            "sender_id": info.get("sender_id"),
            "receiver_id": (info.get("registry_ids") or {}).get(registry),
            "token_url": info.get("token_url"),
            "client_id": info.get("client_id"),
            "client_secret": info.get("client_secret"),
            "jwks_url": info.get("jwks_url"),
        }
        if info.get("partner_jwk"):
            keys = Path(info["partner_jwk"])
            data["keys_file"] = keys if keys.is_absolute() else path.parent / keys
        data.update(overrides)
        return cls.build(data, str(path))

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> ClientSettings:
        """Settings from a YAML or JSON file holding the members of ClientSettings."""
        file = Path(path)
        try:
            text = file.read_text("utf-8")
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read client settings {file}: {exc.strerror}"
            ) from None
        try:
            data = yaml.safe_load(text) if file.suffix.lower() != ".json" else json.loads(text)
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            first = str(exc).splitlines()[0]
            raise ConfigurationError(f"{file} is not valid YAML/JSON: {first}") from None
        if not isinstance(data, dict):
            raise ConfigurationError(f"{file} must hold a mapping of settings")
        keys_file = data.get("keys_file")
        if keys_file and not Path(keys_file).is_absolute():
            data["keys_file"] = file.parent / keys_file
        data.update(overrides)
        return cls.build(data, str(file))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        prefix: str = ENV_PREFIX,
        **overrides: Any,
    ) -> ClientSettings:
        """Settings from environment variables: `DCIHUB_CLIENT_BASE_URL`, `..._SENDER_ID`, ...
        (each member name upper-cased after the prefix)."""
        return cls.build({**env_values(environ, prefix), **overrides}, "environment")

    def merged(self, **overrides: Any) -> ClientSettings:
        """A copy with these settings replaced (None values are ignored: unset flags)."""
        data = self.model_dump()
        for name in ("client_secret", "token"):
            secret = getattr(self, name)
            data[name] = secret.get_secret_value() if secret is not None else None
        data.update({k: v for k, v in overrides.items() if v is not None})
        return self.build(data)

    # -- derived -------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The URL of a DCI endpoint (`path` after `/registry/`, e.g. `sync/search`)."""
        return f"{self.base_url}/registry/{path.lstrip('/')}"

    def private_jwks(self) -> dict[str, Any] | None:
        """The client's private JWK set, from `keys` or `keys_file`."""
        if self.keys is not None:
            return self.keys
        if self.keys_file is None:
            return None
        return _read_json(self.keys_file, "key file")


def env_values(environ: Mapping[str, str] | None, prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """The ClientSettings members found in `environ` (`prefix` + upper-case member name)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in ClientSettings.model_fields:
        raw = env.get(prefix + name.upper())
        if raw is None or raw == "":
            continue
        if name in ("keys", "registry_jwks"):
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(f"{prefix}{name.upper()} is not JSON: {exc}") from None
        else:
            values[name] = raw
    return values


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except OSError as exc:
        hint = " (run `dcihub demo` first?)" if what == "demo file" else ""
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}{hint}") from None
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{what} {path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"{what} {path} must hold a JSON object")
    return data
