"""Partner registry (YAML, hashed secrets, authorisation) and JwksResolver against a real server."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dcihub.security import signatures
from dcihub.security.errors import PartnerConfigError
from dcihub.security.partners import JwksResolver, Partner, PartnerRegistry, httpx_fetch


def make_partner(**kw: Any) -> Partner:
    defaults: dict[str, Any] = {
        "sender_id": "spmis.example.org",
        "name": "Example SP-MIS",
        "client_id": "spmis",
        "scopes": {"crvs": ["search", "subscribe"], "social": "*"},
        "callback_prefixes": ["https://spmis.example.org/dci/"],
        "fields": {"crvs": ["identifier", "name.given_name"]},
    }
    defaults.update(kw)
    return Partner(**defaults)


# -- registry --------------------------------------------------------------------------------


def test_save_and_load_round_trip_with_hashed_secret(tmp_path: Path, keys) -> None:
    registry = PartnerRegistry()
    jwks = {"keys": [keys["ES256"].as_dict()]}
    registry.add(make_partner(jwks=jwks, encrypt_replies=True), client_secret="s3cret-value")
    registry.add(
        make_partner(sender_id="demo", client_id="demo", scopes={"*": "*"}, allow_unsigned=True)
    )
    path = tmp_path / "partners.yaml"
    registry.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "s3cret-value" not in text and "client_secret_hash: scrypt$" in text
    loaded = PartnerRegistry.load(path)
    assert len(loaded) == 2
    partner = loaded.get("spmis.example.org")
    assert partner is not None and partner.encrypt_replies and partner.jwks == jwks
    assert loaded.by_client_id("spmis") is partner
    assert loaded.authenticate("spmis", "s3cret-value") is partner
    assert loaded.authenticate("spmis", "wrong") is None
    assert loaded.authenticate("nobody", "s3cret-value") is None
    demo = loaded.get("demo")
    assert demo is not None and demo.allow_unsigned and not demo.signature_required


def test_add_and_remove(tmp_path: Path) -> None:
    registry = PartnerRegistry([make_partner()])
    with pytest.raises(PartnerConfigError, match="already registered"):
        registry.add(make_partner())
    with pytest.raises(PartnerConfigError, match="client_id 'spmis'"):
        registry.add(make_partner(sender_id="other"))
    assert registry.remove("spmis.example.org")
    assert not registry.remove("spmis.example.org")
    assert registry.get("spmis.example.org") is None and registry.by_client_id("spmis") is None
    assert registry.get(None) is None


def test_authorisation_helpers() -> None:
    partner = make_partner()
    assert partner.allows("crvs", "search") and not partner.allows("crvs", "notify")
    assert partner.allows("social", "anything") and not partner.allows("dr", "search")
    assert partner.grant_scopes("registry.search") == [
        "crvs:registry.search",
        "social:registry.search",
    ]
    assert partner.allowed_fields("crvs") == ["identifier", "name.given_name"]
    assert partner.allowed_fields("social") is None
    assert partner.signature_required and partner.signature_profile == "jws-detached"


def test_callback_secret_from_environment(monkeypatch) -> None:
    partner = make_partner(callback_client_secret="env:SPMIS_CB_SECRET")
    with pytest.raises(PartnerConfigError, match="SPMIS_CB_SECRET"):
        partner.callback_secret()
    monkeypatch.setenv("SPMIS_CB_SECRET", "from-env")
    assert partner.callback_secret() == "from-env"
    assert make_partner(callback_client_secret="plain").callback_secret() == "plain"


@pytest.mark.parametrize(
    "entry,match",
    [
        ({"sender_id": "x", "client_secret": "plain"}, "client_secret_hash"),
        ({"sender_id": "x", "colour": "red"}, "unknown keys"),
        ({"sender_id": ""}, "sender_id"),
        ({"sender_id": "x", "signature_profile": "x-hmac"}, "signature_profile"),
        ({"sender_id": "x", "scopes": {"crvs": "search"}}, "scopes"),
        (
            {"sender_id": "x", "jwks": {"keys": [{"kty": "oct", "k": "AAAA"}]}},
            "private or symmetric",
        ),
        ({"sender_id": "x", "fields": {"crvs": "name"}}, "fields"),
    ],
)
def test_invalid_partner_files_are_refused(tmp_path: Path, entry, match) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"partners": [entry]}))
    with pytest.raises(PartnerConfigError, match=match):
        PartnerRegistry.load(path)


def test_unreadable_or_wrongly_shaped_file(tmp_path: Path) -> None:
    with pytest.raises(PartnerConfigError, match="cannot read"):
        PartnerRegistry.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("partners: {not: a list}")
    with pytest.raises(PartnerConfigError, match="'partners' list"):
        PartnerRegistry.load(tmp_path / "bad.yaml")


# -- JwksResolver with a real local HTTP server -----------------------------------------------


class JwksServer:
    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                if outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_resolver_fetches_and_refetches_on_unknown_kid(
    jwks_server: JwksServer, keys, other_keys, header, message
) -> None:
    clock = Clock()
    jwks_server.jwks = {"keys": [keys["ES256"].as_dict()]}
    partner = make_partner(jwks_url=jwks_server.url)
    with httpx.Client() as http:
        resolver = JwksResolver(partner, httpx_fetch(http), min_refetch_seconds=60, now=clock)
        signature = signatures.sign(header, message, keys["ES256"])
        assert (
            signatures.verify(signature, header, message, resolver.resolve).kid == keys["ES256"].kid
        )
        assert jwks_server.hits == 1
        # known kid: no refetch
        resolver.resolve(keys["ES256"].kid, "ES256")
        assert jwks_server.hits == 1

        # the partner rotates: a new kid appears; the first unknown kid triggers one refetch
        new_key = other_keys["ES256"]
        jwks_server.jwks = {"keys": [keys["ES256"].as_dict(), new_key.as_dict()]}
        assert resolver.resolve(new_key.kid, "ES256") is None  # rate-limited: too soon
        assert jwks_server.hits == 1
        clock.t = 61
        assert resolver.resolve(new_key.kid, "ES256") is not None
        assert jwks_server.hits == 2
        # unknown kids do not hammer the partner
        for _ in range(5):
            assert resolver.resolve("nope", "ES256") is None
        assert jwks_server.hits == 2


def test_resolver_keeps_old_keys_when_fetch_fails(jwks_server: JwksServer, keys) -> None:
    clock = Clock()
    jwks_server.jwks = {"keys": [keys["ES256"].as_dict()]}
    with httpx.Client() as http:
        resolver = JwksResolver(
            make_partner(jwks_url=jwks_server.url), httpx_fetch(http), now=clock
        )
        assert resolver.resolve(keys["ES256"].kid) is not None
        jwks_server.fail = True
        clock.t = 1000
        assert resolver.resolve("unknown") is None
        assert resolver.last_error and "500" in resolver.last_error
        assert resolver.resolve(keys["ES256"].kid) is not None


@pytest.mark.parametrize("asynchronous", [False, True])
def test_a_jwks_url_answering_no_object_is_an_error_not_a_crash(
    jwks_server: JwksServer, keys, asynchronous: bool
) -> None:
    jwks_server.jwks = [keys["ES256"].as_dict()]  # type: ignore[assignment]  # a list, no set
    partner = make_partner(jwks_url=jwks_server.url)

    async def run() -> JwksResolver:
        async with httpx.AsyncClient() as http:
            resolver = JwksResolver(partner, httpx_fetch(http))
            await resolver.refresh_for(keys["ES256"].kid)
            return resolver

    if asynchronous:
        resolver = asyncio.run(run())
    else:
        with httpx.Client() as http:
            resolver = JwksResolver(partner, httpx_fetch(http))
            assert resolver.resolve(keys["ES256"].kid) is None
    assert resolver.resolve(keys["ES256"].kid) is None
    assert resolver.last_error and "not answer a JSON object" in resolver.last_error


def test_resolver_async_fetch(jwks_server: JwksServer, keys) -> None:
    jwks_server.jwks = {"keys": [keys["EdDSA"].as_dict(), keys["RSA-OAEP-256"].as_dict()]}

    async def run() -> None:
        async with httpx.AsyncClient() as http:
            resolver = JwksResolver(make_partner(jwks_url=jwks_server.url), httpx_fetch(http))
            assert resolver.resolve(keys["EdDSA"].kid) is None  # async: resolve never fetches
            await resolver.refresh_for(keys["EdDSA"].kid)
            assert resolver.resolve(keys["EdDSA"].kid) is not None
            await resolver.refresh_for(keys["EdDSA"].kid)  # known: no refetch
            assert jwks_server.hits == 1
            enc = resolver.encryption_key()
            assert enc is not None and enc.kid == keys["RSA-OAEP-256"].kid

    asyncio.run(run())


def test_resolver_inline_jwks_and_kidless_lookup(keys) -> None:
    partner = make_partner(
        jwks={"keys": [keys["EdDSA"].as_dict(), keys["ECDH-ES+A256KW"].as_dict(), {"kty": "bad"}]}
    )
    resolver = JwksResolver(partner)
    assert resolver.resolve(keys["EdDSA"].kid, "EdDSA") is not None
    assert resolver.resolve(None, "EdDSA").kid == keys["EdDSA"].kid  # the only signing key
    assert resolver.resolve("unknown") is None
    assert resolver.encryption_key().kid == keys["ECDH-ES+A256KW"].kid
    assert resolver.encryption_key("RSA-OAEP-256") is None
    assert all(not k.is_private for k in resolver.keys())


def test_resolver_ignores_private_keys_in_fetched_jwks(jwks_server: JwksServer, keys) -> None:
    jwks_server.jwks = {"keys": [keys["ES256"].as_dict(private=True)]}
    with httpx.Client() as http:
        resolver = JwksResolver(make_partner(jwks_url=jwks_server.url), httpx_fetch(http))
        assert resolver.resolve(keys["ES256"].kid) is None
