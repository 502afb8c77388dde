"""Configuration of a dcihub node: store, registries served, limits, delivery, security.

`dcihub serve --config FILE` reads a YAML (or JSON) file with these members; every member has a
default, so a file holding only `store_url` is a valid configuration. Relative paths in the file
are relative to the file's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .standard.plan import Limits
from .standard.profiles import PROFILES


class LimitSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default_page_size: int = Field(100, ge=1)
    max_page_size: int = Field(1000, ge=1)
    max_total_records: int | None = Field(
        100_000,
        ge=1,
        description="a query matching more records is refused (rjct.search.too_many_records_found)",
    )
    max_batch_items: int = Field(1000, ge=1, description="items in one message")
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    read_timeout: float = Field(
        30.0, gt=0, description="seconds a request body may take to arrive (408 past it)"
    )
    keep_alive_timeout: float = Field(
        5.0, gt=0, description="seconds an idle keep-alive connection stays open"
    )
    max_query_terms: int = Field(
        10_000,
        ge=1,
        description="work budget of one message: query conditions plus every value of every "
        "'in' list, over all its items (rjct.search_criteria.invalid past it)",
    )

    max_reply_records: int | None = Field(
        10_000,
        ge=1,
        description="records in one reply (sync search, on-search callback), over all its "
        "items; an item past it -> rjct.search.too_many_records_found (null: no bound)",
    )
    max_reply_bytes: int | None = Field(
        8 * 1024 * 1024,
        ge=1024,
        description="bytes of records (their JSON) in one reply, over all its items; an item "
        "past it -> rjct.search.too_many_records_found (null: no bound)",
    )

    partner_requests_per_second: float | None = Field(
        None,
        gt=0,
        description="DCI requests per second a partner may send, in each API process (a "
        "partner's requests_per_second overrides it); past it: 429 "
        "err.request.too_many_requests with Retry-After (null: no limit)",
    )
    partner_requests_per_day: int | None = Field(
        None,
        ge=1,
        description="DCI requests a partner may send per UTC day, counted in the store over "
        "every API process (a partner's requests_per_day overrides it); past it: 429 "
        "err.request.too_many_requests with Retry-After (null: no limit)",
    )

    def search_limits(self) -> Limits:
        return Limits(
            self.default_page_size, self.max_page_size, self.max_total_records, self.max_query_terms
        )


class DeliverySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(12, ge=1)
    backoff_base: float = Field(1.0, gt=0, description="seconds before the first retry")
    backoff_max: float = Field(600.0, gt=0)
    timeout: float = Field(
        10.0, gt=0, description="the longest one delivery attempt may take, answer included"
    )
    concurrency: int = Field(32, ge=1, description="rows one worker works on at once")
    per_target: int = Field(
        4,
        ge=1,
        description="deliveries at once to one callback target (scheme, host, port), and async "
        "searches at once of one partner, per worker",
    )
    in_process_worker: bool = True
    poll_interval: float = Field(1.0, gt=0)
    lease_seconds: float = Field(
        10.0,
        ge=1,
        description="lease of a claimed row, renewed every third of it while its worker lives: "
        "the rows of a worker that died are claimed again after at most this long",
    )


class RetentionSettings(BaseModel):
    """What the worker purges, and when (docs/reliability.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: nothing is ever purged")
    interval: float = Field(3600.0, ge=1, description="seconds between two purges of a worker")
    delivered_days: float = Field(
        7.0, ge=0, description="days a delivered callback's outbox row (no payload) is kept"
    )
    dead_days: float = Field(
        30.0,
        ge=0,
        description="days a given-up callback (with its payload, for `dcihub deliveries --retry`) "
        "is kept",
    )
    transactions_days: float = Field(
        30.0,
        ge=1,
        description="days txn/status answers for a finished transaction after its last change",
    )
    batch: int = Field(5000, ge=1, description="rows deleted per statement (short transactions)")


class SecuritySettings(BaseModel):
    """Trust between organisations (docs/security.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        True, description="false only for local experiments: no tokens, no signatures, no audit"
    )
    key_dir: str = Field("keys", description="our key pairs (JWK files, mode 0600)")
    signing_alg: Literal["ES256", "EdDSA", "RS256"] = "ES256"
    key_overlap_days: float = Field(
        7.0,
        ge=0,
        description="retired keys stay published and usable for verification/decryption this long",
    )
    partners_file: str = Field("partners.yaml", description="the partner registry")
    issuer: str | None = Field(None, description="token issuer; default base_url")
    token_ttl: int = Field(300, ge=30, le=86400)
    replay_window: float = Field(
        86400.0, gt=0, description="seconds a (sender_id, message_id) is remembered"
    )
    replay_reply_seconds: float = Field(
        600.0,
        gt=0,
        description="how long the copy of a sync "
        "reply (with its records) is kept for replays; later "
        "replays get 409",
    )
    replay_reply_max_bytes: int = Field(
        65_536,
        ge=0,
        description="a reply larger than this is not kept for replays (only the fact that the "
        "message_id was answered); a replay of it gets 409",
    )
    clock_skew: float = Field(
        300.0, gt=0, description="allowed distance of header.message_ts from our clock, in seconds"
    )
    require_consent: dict[str, list[str]] = Field(
        default_factory=dict,
        description="registry -> purpose codes accepted in a search's consent/authorize (an "
        "empty list: any purpose the partner may claim); searches without one are "
        "refused",
    )
    audit: bool = True
    jwks_refetch_seconds: float = Field(60.0, gt=0)
    base_dir: str | None = Field(
        None,
        description="directory relative paths are resolved "
        "against (default: the configuration file's directory)",
    )

    def path(self, value: str) -> Path:
        candidate = Path(value)
        if not candidate.is_absolute() and self.base_dir:
            candidate = Path(self.base_dir) / candidate
        return candidate


class OperationsSettings(BaseModel):
    """Who may read the operator pages: `/console/`, `/metrics`, `/status` (`/healthz` is a
    bare liveness answer for anyone)."""

    model_config = ConfigDict(extra="forbid")

    access: Literal["token", "open"] = Field(
        "token",
        description="token: an operator token is required (Bearer, or HTTP Basic with any user "
        "name and the token as password); open: anyone who can reach the node",
    )
    token_file: str = Field(
        "operations.token",
        description="file holding the operator token (made, mode 0600, when missing); relative "
        "to security.base_dir",
    )


class RegistrySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = (
        None  # this registry's id (sender_id of what it sends); default <name>.<node_id>
    )
    known_values: dict[str, list[str]] = Field(
        default_factory=dict,
        description="attribute -> the values the registry accepts for it in records it is "
        "sent (IBR enrolment updates: programme_identifier); an attribute not listed: the "
        "values its records hold already",
    )


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_url: str = "sqlite:///dcihub.db"
    store_auto_upgrade: bool = Field(
        False,
        description="upgrade a store that is behind when serve or worker starts (one process "
        "at a time); false: refuse to start and name `dcihub store upgrade`",
    )
    node_id: str = "dcihub.local"
    base_url: str = "http://127.0.0.1:8000"
    registries: dict[str, RegistrySettings] = Field(
        default_factory=lambda: {name: RegistrySettings() for name in PROFILES}
    )
    limits: LimitSettings = Field(default_factory=LimitSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    operations: OperationsSettings = Field(default_factory=OperationsSettings)

    @field_validator("registries", mode="before")
    @classmethod
    def _registries(cls, value: Any) -> Any:
        if isinstance(value, list):
            value = {name: {} for name in value}
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(PROFILES))
            if unknown:
                raise ValueError(
                    f"unknown registr{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                    f"known: {', '.join(PROFILES)}"
                )
            value = {k: (v or {}) for k, v in value.items()}
        return value

    def registry_id(self, registry: str) -> str:
        configured = self.registries.get(registry)
        if configured is not None and configured.id:
            return configured.id
        return f"{registry}.{self.node_id}"

    def registry_url(self, registry: str) -> str:
        return f"{self.base_url.rstrip('/')}/{registry}"


class ConfigError(Exception):
    pass


def load_settings(path: Path) -> Settings:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings")
    url = data.get("store_url")
    if isinstance(url, str) and url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        relative = url[len("sqlite:///") :]
        if relative and relative != ":memory:":
            data["store_url"] = f"sqlite:///{(path.parent / relative).resolve()}"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
    if settings.security.base_dir is None:
        settings.security.base_dir = str(path.parent.resolve())
    return settings
