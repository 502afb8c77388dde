"""The operator commands: `dcihub partners …`, `dcihub keys …`, `dcihub audit …`.

Each test works on a configuration file in a temporary directory (store, partner file and key
directory next to it), as an operator would; the audit tests also run on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from dcihub.cli import app
from dcihub.security.keys import load_jwk
from dcihub.security.partners import JwksResolver, PartnerRegistry
from dcihub.security.signatures import sign, verify
from dcihub.store import Store
from dcihub.store.audit import AuditEntry

ENV = {"COLUMNS": "250"}  # wide tables: no cell is folded over two lines


def run(*args: str | Path) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args], env=ENV)
    assert "Traceback" not in result.output, result.output
    return result


def error_line(result: object) -> str:
    """The one line a failing command prints."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.stderr  # type: ignore[attr-defined]
    assert lines[0].startswith("error: "), lines
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "store_url": "sqlite:///store.db",
                "node_id": "node.test",
                "registries": ["crvs", "social"],
            }
        )
    )
    return path


def partners_of(config: Path) -> PartnerRegistry:
    return PartnerRegistry.load(config.parent / "partners.yaml")


def secret_from(output: str) -> str:
    lines = output.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("client secret"))
    return lines[index + 1].strip()


def add(
    config: Path, sender_id: str = "spmis.example", client_id: str = "spmis", *options: str | Path
) -> str:
    result = run(
        "partners", "add", sender_id, "--config", config, "--client-id", client_id, *options
    )
    assert result.exit_code == 0, result.output
    return secret_from(result.stdout)


# ---------------------------------------------------------------------------------------------
# partners


def test_add_prints_the_secret_once_and_stores_only_its_hash(config: Path) -> None:
    result = run(
        "partners",
        "add",
        "spmis.example",
        "-c",
        config,
        "--client-id",
        "spmis",
        "--name",
        "Example SP-MIS",
        "--scope",
        "crvs:search,subscribe",
        "--scope",
        "social:*",
        "--callback-prefix",
        "https://spmis.example.org/dci/",
        "--jwks-url",
        "https://spmis.example.org/.well-known/jwks.json",
        "--fields",
        "crvs:identifier,name.given_name",
        "--consent-purpose",
        "PURPOSE1",
        "--encrypt-replies",
    )
    assert result.exit_code == 0, result.output
    secret = secret_from(result.stdout)
    assert len(secret) >= 40
    assert "no restart is needed" in result.stderr

    stored = (config.parent / "partners.yaml").read_text()
    assert secret not in stored
    assert "client_secret_hash: scrypt$" in stored
    assert stat.S_IMODE((config.parent / "partners.yaml").stat().st_mode) == 0o600

    registry = partners_of(config)
    partner = registry.authenticate("spmis", secret)
    assert partner is not None and partner.sender_id == "spmis.example"
    assert registry.authenticate("spmis", secret + "x") is None
    assert partner.name == "Example SP-MIS"
    assert partner.scopes == {"crvs": ["search", "subscribe"], "social": "*"}
    assert partner.allows("crvs", "subscribe") and not partner.allows("crvs", "txn-status")
    assert partner.callback_prefixes == ["https://spmis.example.org/dci/"]
    assert partner.jwks_url == "https://spmis.example.org/.well-known/jwks.json"
    assert partner.fields == {"crvs": ["identifier", "name.given_name"]}
    assert partner.consent_purposes == ["PURPOSE1"]
    assert partner.encrypt_replies and partner.require_signature
    assert not partner.require_encryption and not partner.allow_private_callbacks


def test_list_and_show(config: Path) -> None:
    add(
        config,
        "spmis.example",
        "spmis",
        "--scope",
        "crvs:search",
        "--callback-prefix",
        "http://127.0.0.1:*/cb",
        "--jwks-url",
        "https://spmis.example.org/jwks",
        "--fields",
        "crvs:identifier",
        "--require-encryption",
    )
    add(
        config,
        "other.example",
        "other",
        "--no-signature-required",
        "--signature-profile",
        "jws-compact",
    )

    listing = run("partners", "list", "--config", config)
    assert listing.exit_code == 0, listing.output
    header = next(line for line in listing.stdout.splitlines() if "sender_id" in line)
    for column in (
        "name",
        "client_id",
        "scopes",
        "callbacks",
        "profile",
        "signed",
        "encrypted",
        "fields restricted",
    ):
        assert column in header
    first = next(line for line in listing.stdout.splitlines() if "spmis.example" in line)
    assert "crvs: search" in first and "http://127.0.0.1:*/cb" in first
    assert "jws-detached" in first and "required" in first and "requests" in first
    assert first.rstrip(" │").endswith("yes")
    second = next(line for line in listing.stdout.splitlines() if "other.example" in line)
    assert "jws-compact" in second and "optional" in second
    assert second.rstrip(" │").endswith("no")

    shown = run("partners", "show", "spmis.example", "--config", config)
    assert shown.exit_code == 0, shown.output
    hashed = partners_of(config).get("spmis.example").client_secret_hash
    assert hashed and hashed not in shown.stdout and "scrypt" not in shown.stdout
    lines = {line.split("  ")[0].strip(): line for line in shown.stdout.splitlines()}
    assert lines["client secret"].split()[-1] == "set"
    assert "https://spmis.example.org/jwks" in lines["jwks_url"]
    assert "crvs: identifier" in lines["fields"]
    assert lines["encrypted requests required"].split()[-1] == "yes"
    assert lines["callback client secret"].rstrip().endswith("not set")


def test_a_gateway_verified_partner_is_explicit_and_shown(config: Path) -> None:
    """`signature_verified_by_gateway` is never the default, is set and cleared by name, and
    `partners list` / `show` say who verifies the partner's signatures."""
    add(config, "plain.example", "plain", "--generate-keys", config.parent / "plain.jwk")
    raw = yaml.safe_load((config.parent / "partners.yaml").read_text())
    assert "signature_verified_by_gateway" not in raw["partners"][0]
    assert not partners_of(config).get("plain.example").signature_verified_by_gateway

    result = run(
        "partners",
        "add",
        "xroad.example",
        "--config",
        config,
        "--client-id",
        "xroad",
        "--signature-verified-by-gateway",
    )
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr and "gateway" in result.stderr
    assert "has no public keys" not in result.stderr  # nothing to verify here
    assert partners_of(config).get("xroad.example").signature_verified_by_gateway

    listing = run("partners", "list", "--config", config).stdout
    gated = next(line for line in listing.splitlines() if "xroad.example" in line)
    plain = next(line for line in listing.splitlines() if "plain.example" in line)
    assert "by gateway" in gated and "by gateway" not in plain and "required" in plain

    def verified_by(sender_id: str) -> str:
        shown = run("partners", "show", sender_id, "--config", config).stdout
        return next(x.strip() for x in shown.splitlines() if "signature verified by" in x)

    assert "gateway" in verified_by("xroad.example")
    assert "not verified by this node" in verified_by("xroad.example")
    assert verified_by("plain.example").split("  ")[-1].strip() == "this node"

    result = run(
        "partners",
        "update",
        "xroad.example",
        "--config",
        config,
        "--no-signature-verified-by-gateway",
    )
    assert result.exit_code == 0, result.output
    assert not partners_of(config).get("xroad.example").signature_verified_by_gateway
    assert verified_by("xroad.example").split("  ")[-1].strip() == "this node"
    result = run(
        "partners", "update", "plain.example", "--config", config, "--signature-verified-by-gateway"
    )
    assert result.exit_code == 0, result.output
    assert partners_of(config).get("plain.example").signature_verified_by_gateway

    # only a true boolean turns verification off
    path = config.parent / "partners.yaml"
    text_value = path.read_text().replace(
        "signature_verified_by_gateway: true", "signature_verified_by_gateway: 'true'"
    )
    path.write_text(text_value)
    result = run("partners", "list", "--config", config)
    assert result.exit_code == 2
    assert "signature_verified_by_gateway must be true or false" in error_line(result)


def test_list_without_partners(config: Path) -> None:
    result = run("partners", "list", "--config", config)
    assert result.exit_code == 0
    assert "no partners" in result.stdout


def test_update_changes_only_what_is_given(config: Path) -> None:
    secret = add(
        config,
        "spmis.example",
        "spmis",
        "--scope",
        "crvs:search",
        "--fields",
        "crvs:identifier",
        "--callback-prefix",
        "https://a.example/cb/",
        "--jwks-url",
        "https://a.example/jwks",
    )
    result = run(
        "partners",
        "update",
        "spmis.example",
        "--config",
        config,
        "--scope",
        "crvs:*",
        "--scope",
        "social:search",
        "--signature-profile",
        "jws-compact",
        "--encrypt-replies",
        "--token-url",
        "https://a.example/token",
        "--callback-client-id",
        "node",
        "--callback-client-secret",
        "env:A_CALLBACK_SECRET",
        "--clear",
        "fields",
    )
    assert result.exit_code == 0, result.output
    assert "client secret" not in result.stdout
    registry = partners_of(config)
    partner = registry.authenticate("spmis", secret)  # the secret is kept
    assert partner is not None
    assert partner.scopes == {"crvs": "*", "social": ["search"]}
    assert partner.signature_profile == "jws-compact" and partner.encrypt_replies
    assert partner.fields == {}
    assert partner.callback_prefixes == ["https://a.example/cb/"]  # not given: kept
    assert partner.jwks_url == "https://a.example/jwks"
    assert (partner.token_url, partner.callback_client_id, partner.callback_client_secret) == (
        "https://a.example/token",
        "node",
        "env:A_CALLBACK_SECRET",
    )

    shown = run("partners", "show", "spmis.example", "--config", config).stdout
    assert "from environment variable A_CALLBACK_SECRET" in shown

    result = run(
        "partners",
        "update",
        "spmis.example",
        "--config",
        config,
        "--client-id",
        "spmis2",
        "--no-encrypt-replies",
        "--clear",
        "callback-auth",
    )
    assert result.exit_code == 0, result.output
    registry = partners_of(config)
    assert registry.authenticate("spmis", secret) is None
    partner = registry.authenticate("spmis2", secret)
    assert partner is not None and not partner.encrypt_replies and partner.token_url is None


def test_set_secret_replaces_the_secret(config: Path) -> None:
    old = add(config)
    result = run("partners", "set-secret", "spmis.example", "--config", config)
    assert result.exit_code == 0, result.output
    new = secret_from(result.stdout)
    assert new != old
    registry = partners_of(config)
    assert registry.authenticate("spmis", new) is not None
    assert registry.authenticate("spmis", old) is None
    assert new not in (config.parent / "partners.yaml").read_text()


def test_remove(config: Path) -> None:
    add(config, "a.example", "a")
    add(config, "b.example", "b")
    result = run("partners", "remove", "a.example", "--config", config)
    assert result.exit_code == 0, result.output
    assert [p.sender_id for p in partners_of(config)] == ["b.example"]
    again = run("partners", "remove", "a.example", "--config", config)
    assert again.exit_code == 2
    assert "no partner with sender_id 'a.example'" in error_line(again)


def test_generate_keys_writes_a_private_jwk_set_and_registers_its_public_part(
    config: Path, tmp_path: Path
) -> None:
    target = tmp_path / "handover" / "spmis.jwk.json"
    target.parent.mkdir()
    result = run(
        "partners",
        "add",
        "spmis.example",
        "--config",
        config,
        "--client-id",
        "spmis",
        "--generate-keys",
        target,
    )
    assert result.exit_code == 0, result.output
    assert str(target.resolve()) in result.stdout.replace("\n", "")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    private = json.loads(target.read_text())
    assert sorted(k["use"] for k in private["keys"]) == ["enc", "sig"]
    assert all("d" in k for k in private["keys"])
    partner = partners_of(config).get("spmis.example")
    assert partner is not None and partner.jwks is not None
    public = partner.jwks["keys"]
    assert {k["kid"] for k in public} == {k["kid"] for k in private["keys"]}
    assert not any("d" in k for k in public)

    # what the partner signs with the private file verifies with the registered public part
    signing = load_jwk(next(k for k in private["keys"] if k["use"] == "sig"))
    header = {"message_id": "m1", "sender_id": "spmis.example", "action": "search"}
    message = {"transaction_id": "t1"}
    signature = sign(header, message, signing)
    verified = verify(signature, header, message, JwksResolver(partner).resolve)
    assert verified.kid == signing.kid

    # an Ed25519 signing key for the http-sig profile, on update
    target2 = tmp_path / "handover" / "second.jwk.json"
    result = run(
        "partners",
        "update",
        "spmis.example",
        "--config",
        config,
        "--signature-profile",
        "http-sig-ed25519",
        "--generate-keys",
        target2,
    )
    assert result.exit_code == 0, result.output
    algs = {k["alg"] for k in json.loads(target2.read_text())["keys"]}
    assert algs == {"EdDSA", "ECDH-ES+A256KW"}


def test_an_http_sig_partner_gets_the_node_an_ed25519_signing_key(config: Path) -> None:
    # before the node has keys, nothing is made (the node makes it at first start)
    add(
        config,
        "early",
        "early",
        "--signature-profile",
        "http-sig-ed25519",
        "--no-signature-required",
    )
    assert not (config.parent / "keys").exists()

    assert run("keys", "rotate", "--config", config).exit_code == 0  # the node's ES256 keys
    result = run(
        "partners",
        "add",
        "spmis.example",
        "--config",
        config,
        "--client-id",
        "spmis",
        "--signature-profile",
        "http-sig-ed25519",
        "--no-signature-required",
    )
    assert result.exit_code == 0, result.output
    assert "made an additional Ed25519 signing key" in result.stderr
    published = json.loads(run("keys", "jwks", "--config", config).stdout)["keys"]
    signing = sorted(k["alg"] for k in published if k["use"] == "sig")
    assert signing == ["ES256", "EdDSA"]

    again = run("partners", "update", "early", "--config", config, "--name", "Early")
    assert again.exit_code == 0 and "additional Ed25519" not in again.stderr
    listed = run("keys", "list", "--config", config).stdout
    assert listed.count("EdDSA") == 1


def test_jwks_file_registers_public_keys_and_refuses_private_ones(
    config: Path, tmp_path: Path
) -> None:
    from dcihub.security.keys import generate_key

    key = generate_key("sig", "ES256")
    public = tmp_path / "public.json"
    public.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    add(config, "spmis.example", "spmis", "--jwks-file", public)
    assert partners_of(config).get("spmis.example").jwks["keys"][0]["kid"] == key.kid

    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    result = run(
        "partners",
        "add",
        "other",
        "--config",
        config,
        "--client-id",
        "other",
        "--jwks-file",
        private,
    )
    assert result.exit_code == 2
    assert "private key material" in error_line(result)


def test_a_partner_without_keys_is_added_with_a_warning(config: Path) -> None:
    result = run("partners", "add", "spmis.example", "--config", config, "--client-id", "spmis")
    assert result.exit_code == 0
    assert "warning: the partner has no public keys" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scope", "nowhere:search"], "unknown registry 'nowhere'"),
        (["--scope", "crvs"], "expected registry:action"),
        (["--scope", "crvs:search now"], "is not an action name"),
        (["--fields", "nowhere:identifier"], "unknown registry 'nowhere'"),
        (["--fields", "crvs:"], "expected registry:path,path"),
        (["--callback-prefix", "ftp://files.example/"], "must start with https://"),
        (["--callback-prefix", "https://"], "it has no host"),
        (["--callback-prefix", "https://user@a.example/"], "user information"),
        (["--callback-prefix", "https://a.example:99999/"], "is not a valid URL"),
        (["--jwks-url", "not a url"], "--jwks-url 'not a url' is not a valid URL"),
        (["--token-url", "https://a.example/token"], "missing: --callback-client-id"),
        (
            [
                "--token-url",
                "https://a.example/token",
                "--callback-client-id",
                "me",
                "--callback-client-secret",
                "s3cret",
            ],
            "must be env:NAME",
        ),
        (["--jwks-url", "https://a.example/jwks", "--jwks-file", "x.json"], "give only one of"),
        (["--jwks-file", "/nonexistent/jwks.json"], "cannot read it"),
        (["--consent-purpose", " "], "must be non-empty"),
    ],
)
def test_bad_partner_options_exit_2_with_one_clear_line(
    config: Path, args: list[str], message: str
) -> None:
    result = run(
        "partners", "add", "spmis.example", "--config", config, "--client-id", "spmis", *args
    )
    assert result.exit_code == 2, result.output
    assert message in error_line(result)
    assert not (config.parent / "partners.yaml").exists()


def test_duplicates_are_refused(config: Path) -> None:
    add(config, "spmis.example", "spmis")
    again = run("partners", "add", "spmis.example", "--config", config, "--client-id", "x")
    assert again.exit_code == 2
    assert "sender_id 'spmis.example' is already registered" in error_line(again)
    same_client = run("partners", "add", "other", "--config", config, "--client-id", "spmis")
    assert same_client.exit_code == 2
    assert "client_id 'spmis' is already registered" in error_line(same_client)
    add(config, "other", "other")
    clash = run("partners", "update", "other", "--config", config, "--client-id", "spmis")
    assert clash.exit_code == 2
    assert "client_id 'spmis' is already registered" in error_line(clash)


def test_generate_keys_never_overwrites(config: Path, tmp_path: Path) -> None:
    existing = tmp_path / "keys.json"
    existing.write_text("{}")
    result = run(
        "partners",
        "add",
        "spmis.example",
        "--config",
        config,
        "--client-id",
        "spmis",
        "--generate-keys",
        existing,
    )
    assert result.exit_code == 2
    assert "the file exists" in error_line(result)
    assert existing.read_text() == "{}"


def test_unknown_partner(config: Path) -> None:
    for command in ("show", "update", "remove", "set-secret"):
        result = run("partners", command, "ghost", "--config", config)
        assert result.exit_code == 2, (command, result.output)
        assert "no partner with sender_id 'ghost'" in error_line(result)


def test_config_errors_exit_2(tmp_path: Path) -> None:
    missing = run("partners", "list", "--config", tmp_path / "nope.yaml")
    assert missing.exit_code == 2
    assert "cannot read configuration" in error_line(missing)

    broken = tmp_path / "broken.yaml"
    broken.write_text("store_url: [unclosed\n")
    result = run("keys", "list", "--config", broken)
    assert result.exit_code == 2
    assert "is not valid YAML" in error_line(result)

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("stor_url: sqlite:///x.db\n")
    result = run("audit", "verify", "--config", unknown)
    assert result.exit_code == 2
    assert "stor_url" in error_line(result)

    no_option = run("partners", "list")
    assert no_option.exit_code == 2
    assert "--config" in no_option.output

    bad_partner_file = tmp_path / "node.yaml"
    bad_partner_file.write_text("security: {partners_file: p.yaml}\n")
    (tmp_path / "p.yaml").write_text("partners:\n  - sender_id: a\n    client_secret: plain\n")
    result = run("partners", "list", "--config", bad_partner_file)
    assert result.exit_code == 2
    assert "plain client_secret" in error_line(result)


# ---------------------------------------------------------------------------------------------
# keys


def test_keys_list_rotate_jwks(config: Path) -> None:
    empty = run("keys", "list", "--config", config)
    assert empty.exit_code == 0 and "no keys" in empty.stdout
    assert json.loads(run("keys", "jwks", "--config", config).stdout) == {"keys": []}
    assert not (config.parent / "keys").exists()  # listing never creates keys

    first = run("keys", "rotate", "--config", config)
    assert first.exit_code == 0, first.output
    assert "created the first ones" in first.stdout
    jwks = json.loads(run("keys", "jwks", "--config", config).stdout)
    before = {k["kid"]: k for k in jwks["keys"]}
    assert sorted(k["use"] for k in before.values()) == ["enc", "enc", "sig"]
    assert not any("d" in k or "p" in k for k in before.values())

    rotated = run("keys", "rotate", "--config", config)
    assert rotated.exit_code == 0, rotated.output
    assert "retired (still published until" in rotated.stdout
    assert "within a few seconds" in rotated.stderr
    for kid in before:
        assert kid in rotated.stdout
    after = {k["kid"] for k in json.loads(run("keys", "jwks", "--config", config).stdout)["keys"]}
    assert set(before) < after and len(after) == 6  # the old kids stay published

    listing = run("keys", "list", "--config", config)
    assert listing.exit_code == 0, listing.output
    rows = [line for line in listing.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 6
    for kid in before:
        row = next(r for r in rows if kid in r)
        assert "retiring until" in row
    assert sum("current" in r for r in rows) == 3
    for column in ("kid", "use", "alg", "created", "status"):
        assert column in listing.stdout

    key_files = list((config.parent / "keys").glob("*.json"))
    assert len(key_files) == 6
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)


def test_keys_rotate_without_overlap_expires_at_once(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("security: {key_overlap_days: 0}\n")
    assert run("keys", "rotate", "--config", config).exit_code == 0
    old = {k["kid"] for k in json.loads(run("keys", "jwks", "--config", config).stdout)["keys"]}
    result = run("keys", "rotate", "--config", config)
    assert "expired at once" in result.stdout
    now = {k["kid"] for k in json.loads(run("keys", "jwks", "--config", config).stdout)["keys"]}
    assert not old & now
    assert "expired" in run("keys", "list", "--config", config).stdout


def test_keys_refuses_an_unsafe_key_directory(config: Path) -> None:
    assert run("keys", "rotate", "--config", config).exit_code == 0
    os.chmod(config.parent / "keys", 0o777)
    result = run("keys", "list", "--config", config)
    assert result.exit_code == 2
    assert "writable by group or others" in error_line(result) or "chmod" in error_line(result)


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"]])
def test_serve_and_worker_refuse_an_unsafe_key_directory_in_one_line(
    config: Path, command: list[str]
) -> None:
    (config.parent / "keys").mkdir(mode=0o700)
    os.chmod(config.parent / "keys", 0o770)
    result = run(*command, "--config", config)
    assert result.exit_code == 2
    line = error_line(result)
    assert str(config.parent / "keys") in line and "chmod 700" in line


# ---------------------------------------------------------------------------------------------
# audit

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def audit_config(request: pytest.FixtureRequest, tmp_path: Path):
    """A configuration whose store holds the operational tables (SQLite or PostgreSQL)."""
    import support

    if request.param == "sqlite":
        url = "sqlite:///store.db"
        store_url = f"sqlite:///{tmp_path / 'store.db'}"
        context = None
    else:
        context = support.postgres_schema(support.require_postgres())
        url = store_url = context.__enter__()
    store = Store(store_url)
    store.upgrade()
    config = tmp_path / "node.yaml"
    config.write_text(yaml.safe_dump({"store_url": url}))
    try:
        yield config, store
    finally:
        store.dispose()
        if context is not None:
            context.__exit__(None, None, None)


def entry(partner: str, ts: float, n: int, registry: str = "crvs", **extra: object) -> dict:
    return {
        "ts": ts,
        "direction": "in",
        "partner": partner,
        "client_id": partner,
        "registry": registry,
        "endpoint": "/registry/sync/search",
        "action": "search",
        "message_id": f"m-{n}",
        "claimed_sender": partner,
        "transaction_id": f"t-{n}",
        "correlation_id": f"c-{n}",
        "status": 200,
        "outcome": "ok",
        "signature": "jws-detached:kid1",
        "encrypted": False,
        "records": [f"Person:{n}-{i}" for i in range(n % 3)],
        "remote": "127.0.0.1",
        **extra,
    }


def append(store: Store, *entries: dict) -> None:
    with store.begin() as conn:
        store.audit.append_many(conn, [AuditEntry(**e) for e in entries])


def test_audit_verify_intact_and_empty(audit_config) -> None:
    config, store = audit_config
    result = run("audit", "verify", "--config", config)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0 rows, chain intact"
    now = time.time()
    append(store, entry("a", now, 1), entry("b", now, 2))
    append(store, entry("a", now, 3))
    result = run("audit", "verify", "--config", config)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "3 rows, chain intact"


def test_audit_verify_names_an_edited_row(audit_config) -> None:
    config, store = audit_config
    now = time.time()
    append(store, *(entry("a", now, n) for n in range(1, 5)))
    forged = json.dumps(entry("a", now, 2, outcome="err.request.forbidden"), sort_keys=True)
    with store.begin() as conn:
        conn.execute(text("UPDATE audit_log SET entry = :e WHERE seq = 2"), {"e": forged})
    result = run("audit", "verify", "--config", config)
    assert result.exit_code == 1, result.output
    assert "seq 2: edited:" in result.stdout
    assert "4 rows, 1 problem" in result.stdout


def test_audit_verify_names_a_deleted_row(audit_config) -> None:
    config, store = audit_config
    now = time.time()
    append(store, *(entry("a", now, n) for n in range(1, 6)))
    with store.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    result = run("audit", "verify", "--config", config)
    assert result.exit_code == 1, result.output
    assert "seq 4: deleted: rows 3..3 are missing" in result.stdout


def test_audit_verify_names_a_deleted_tail(audit_config) -> None:
    config, store = audit_config
    append(store, *(entry("a", time.time(), n) for n in range(1, 4)))
    with store.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    result = run("audit", "verify", "--config", config)
    assert result.exit_code == 1, result.output
    assert "seq 3: deleted" in result.stdout


def test_audit_show_filters(audit_config) -> None:
    config, store = audit_config
    now = time.time()
    old = now - 10 * 86400
    append(
        store,
        entry("alpha", old, 1),
        entry("beta", old, 2),
        entry("alpha", now - 3600, 3),
        entry("beta", now - 60, 4, registry="social"),
        entry("alpha", now, 5, outcome="err.signature.invalid", status=400, signature="invalid"),
    )

    everything = run("audit", "show", "--config", config)
    assert everything.exit_code == 0, everything.output
    assert all(f"m-{n}" in everything.stdout for n in range(1, 6))
    for column in (
        "time",
        "partner",
        "registry",
        "action",
        "message_id",
        "transaction_id",
        "status",
        "signature",
        "records",
    ):
        assert column in everything.stdout
    last = next(line for line in everything.stdout.splitlines() if "m-5" in line)
    assert "400 err.signature.invalid" in last and "invalid" in last and "t-5" in last

    alpha = run("audit", "show", "--config", config, "--partner", "alpha", "--json")
    assert alpha.exit_code == 0, alpha.output
    rows = [json.loads(line) for line in alpha.stdout.splitlines()]
    assert [r["message_id"] for r in rows] == ["m-1", "m-3", "m-5"]
    assert {r["partner"] for r in rows} == {"alpha"}
    first = rows[0]
    assert first["registry"] == "crvs" and first["action"] == "search"
    assert first["transaction_id"] == "t-1" and first["status"] == 200
    assert first["outcome"] == "ok" and first["signature"] == "jws-detached:kid1"
    assert first["records"] == 1 and first["record_ids"] == ["Person:1-0"]
    assert first["time"].endswith("Z")

    recent = run("audit", "show", "--config", config, "--since", "24h", "--json")
    assert [json.loads(x)["message_id"] for x in recent.stdout.splitlines()] == [
        "m-3",
        "m-4",
        "m-5",
    ]
    day = time.strftime("%Y-%m-%d", time.gmtime(now - 5 * 86400))
    by_date = run(
        "audit", "show", "--config", config, "--since", day, "--partner", "beta", "--json"
    )
    assert [json.loads(x)["message_id"] for x in by_date.stdout.splitlines()] == ["m-4"]
    newest = run("audit", "show", "--config", config, "--limit", "2", "--json")
    assert [json.loads(x)["message_id"] for x in newest.stdout.splitlines()] == ["m-4", "m-5"]

    none = run("audit", "show", "--config", config, "--partner", "nobody")
    assert none.exit_code == 0 and "no audit rows match" in none.stdout

    bad = run("audit", "show", "--config", config, "--since", "last tuesday")
    assert bad.exit_code == 2
    assert "--since 'last tuesday'" in error_line(bad)


def test_audit_without_a_store(tmp_path: Path) -> None:
    config = tmp_path / "node.yaml"
    config.write_text("store_url: sqlite:///missing.db\n")
    for command in (["audit", "verify"], ["audit", "show"]):
        result = run(*command, "--config", config)
        assert result.exit_code == 2
        assert "no store at" in error_line(result)
    assert not (tmp_path / "missing.db").exists()


def test_a_partner_added_by_the_cli_calls_a_live_node_and_the_cli_reads_its_trail(
    tmp_path: Path,
) -> None:
    """End to end: `partners add --generate-keys`, the printed secret gets a token, the key file
    signs a search, and `audit show` / `audit verify` read what the node recorded."""
    import support
    from dcihub.config import load_settings

    config = tmp_path / "node.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store_url": "sqlite:///store.db",
                "node_id": "e2e.test",
                "base_url": f"http://127.0.0.1:{support.free_port()}",
            }
        )
    )
    key_file = tmp_path / "partner.jwk.json"
    secret = add(
        config, "spmis.e2e", "spmis-e2e", "--scope", "crvs:search", "--generate-keys", key_file
    )
    settings = load_settings(config)
    store = Store(settings.store_url)
    store.upgrade()
    server = support.live_server(settings, store, partner=False)
    try:
        partner = support.TestPartner(
            "spmis.e2e", "spmis-e2e", secret, json.loads(key_file.read_text())
        )
        client = support.DCIClient(server, partner)
        client.sync_search("crvs", support.idtype("UIN", "0000000000"))
        refused = client.post(
            "social",
            "sync/search",
            support.search_envelope(support.idtype("UIN", "1"), sender_id="spmis.e2e"),
        )
        assert refused.status_code == 403, refused.text  # no scope on social
    finally:
        server.stop()
        store.dispose()

    shown = run("audit", "show", "--config", config, "--partner", "spmis.e2e", "--json")
    assert shown.exit_code == 0, shown.output
    every = [json.loads(line) for line in shown.stdout.splitlines()]
    rows = [r for r in every if r["action"] != "token"]  # token requests may be audited too
    assert [(r["registry"], r["status"]) for r in rows] == [("crvs", 200), ("social", 403)]
    kid = next(k["kid"] for k in partner.private_jwks["keys"] if k["use"] == "sig")
    assert rows[0]["signature"] == f"jws-detached:{kid}" and rows[0]["outcome"] == "ok"
    assert rows[0]["message_id"] and rows[0]["transaction_id"]
    verified = run("audit", "verify", "--config", config)
    assert verified.exit_code == 0, verified.output
    total = len(run("audit", "show", "--config", config, "--json").stdout.splitlines())
    assert total >= len(every)
    assert verified.stdout.strip() == f"{total} rows, chain intact"


def test_audit_show_reports_a_delivered_callback(backend: str, tmp_path: Path) -> None:
    """A real async search through a live node, its callback delivered to a real receiver, then
    `audit show`: before, the delivery row showed 0 records (it carried 1) and `--json` had no
    direction, attempt or records_sent. `audit verify` passes over rows written as before this
    change (unbounded texts) and rows written after it."""
    import support
    from dcihub.config import load_settings
    from dcihub.population.generator import generate_country
    from dcihub.population.load import load_country
    from dcihub.store.audit import GENESIS, HEAD_KEY, chain_hash, entry_bytes
    from receiver import CallbackReceiver

    with support.store_url_for(backend, tmp_path) as store_url:
        config = tmp_path / "node.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "store_url": store_url,
                    "node_id": "cb.test",
                    "base_url": f"http://127.0.0.1:{support.free_port()}",
                }
            )
        )
        key_file = tmp_path / "partner.jwk.json"
        secret = add(
            config,
            "spmis.cb",
            "spmis-cb",
            "--scope",
            "crvs:search",
            "--callback-prefix",
            "http://127.0.0.1:*/",
            "--allow-private-callbacks",
            "--generate-keys",
            key_file,
        )
        country = generate_country(people=20, seed=7)
        settings = load_settings(config)
        store = Store(settings.store_url)
        store.upgrade()
        load_country(store, country)
        # rows as the trail was written before texts were bounded: a 1 MB id, kept whole
        old = [entry("spmis.cb", time.time(), 1), entry("spmis.cb", time.time(), 2)]
        old[1]["transaction_id"] = "t" * (1024 * 1024)
        prev = GENESIS
        with store.begin() as conn:
            for seq, content in enumerate(old, 1):
                body = entry_bytes(content)
                digest = chain_hash(prev, body)
                conn.execute(
                    text(
                        "INSERT INTO audit_log (seq, ts, partner, registry, entry, prev_hash, "
                        "hash) VALUES (:seq, :ts, :p, :r, :e, :prev, :h)"
                    ),
                    {
                        "seq": seq,
                        "ts": content["ts"],
                        "p": "spmis.cb",
                        "r": "crvs",
                        "e": body.decode(),
                        "prev": prev,
                        "h": digest,
                    },
                )
                prev = digest
            conn.execute(
                text("UPDATE dcihub_meta SET value = :v WHERE key = :k"),
                {"k": HEAD_KEY, "v": json.dumps({"seq": len(old), "hash": prev})},
            )
        receiver = CallbackReceiver().start()
        server = support.live_server(settings, store, partner=False)
        try:
            partner = support.TestPartner(
                "spmis.cb", "spmis-cb", secret, json.loads(key_file.read_text())
            )
            client = support.DCIClient(server, partner)
            uin = country.samples()["crvs"]["identifiers"][0]
            envelope = support.search_envelope(
                support.idtype(uin["type"], uin["value"]),
                sender_id="spmis.cb",
                sender_uri=receiver.url("/registry/on-search"),
            )
            response = client.post("crvs", "search", envelope)
            assert response.status_code == 202, response.text
            callback = receiver.wait_for(1)[0].json()
            assert len(callback["message"]["search_response"][0]["data"]["reg_records"]) == 1
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the delivery row is written after the POST
                shown = run("audit", "show", "--config", config, "--json")
                rows = [json.loads(line) for line in shown.stdout.splitlines()]
                if any(r["direction"] == "out" for r in rows):
                    break
                time.sleep(0.2)
        finally:
            server.stop()
            receiver.stop()
            store.dispose()

        assert shown.exit_code == 0, shown.output
        (out,) = [r for r in rows if r.get("direction") == "out"]
        assert out["action"] == "on-search" and out["outcome"] == "delivered"
        assert out["status"] == 200 and out["attempt"] == 1
        assert out["records_sent"] == 1 and out["records"] == 1
        assert out["transaction_id"] == envelope["message"]["transaction_id"]
        assert out["target_host"] == "127.0.0.1" and out["endpoint"] == "/registry/on-search"
        (search,) = [r for r in rows if r["message_id"] == envelope["header"]["message_id"]]
        assert search["direction"] == "in" and search["action"] == "search"
        assert search["status"] == 202 and search["records_sent"] is None
        assert search["correlation_id"] == response.json()["message"]["correlation_id"]

        table = run("audit", "show", "--config", config)
        assert table.exit_code == 0, table.output
        line = next(x for x in table.stdout.splitlines() if "on-search" in x)
        cells = [c.strip() for c in line.split("│") if c.strip()]
        assert "out" in cells and "200 delivered" in cells and cells[-1] == "1"

        verified = run("audit", "verify", "--config", config)
        assert verified.exit_code == 0, verified.output
        assert verified.stdout.strip() == f"{len(rows)} rows, chain intact"


def test_a_running_node_follows_what_the_cli_changes(tmp_path: Path) -> None:
    """What the commands tell the operator is true: a running node picks up a new secret, a
    key rotation and a removed partner within seconds, without a restart."""
    import base64

    import httpx

    import support
    from dcihub.config import load_settings

    config = tmp_path / "node.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store_url": "sqlite:///store.db",
                "node_id": "live.test",
                "base_url": f"http://127.0.0.1:{support.free_port()}",
            }
        )
    )
    old_secret = add(
        config,
        "spmis.live",
        "spmis-live",
        "--scope",
        "crvs:search",
        "--generate-keys",
        tmp_path / "partner.jwk.json",
    )
    settings = load_settings(config)
    store = Store(settings.store_url)
    store.upgrade()
    server = support.live_server(settings, store, partner=False)
    http = httpx.Client(timeout=10)

    def token(secret: str) -> httpx.Response:
        return http.post(
            f"{server.base_url}/oauth2/client/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "spmis-live",
                "client_secret": secret,
            },
        )

    def eventually(check, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    def kid_of(access_token: str) -> str:
        head = access_token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"]

    try:
        first = token(old_secret)
        assert first.status_code == 200, first.text
        old_kid = kid_of(first.json()["access_token"])

        result = run("partners", "set-secret", "spmis.live", "--config", config)
        assert result.exit_code == 0, result.output
        new_secret = secret_from(result.stdout)
        assert eventually(lambda: token(old_secret).status_code == 401)
        assert token(new_secret).status_code == 200

        result = run("keys", "rotate", "--config", config)
        assert result.exit_code == 0, result.output
        new_sig = next(
            line.split()[0]
            for line in result.stdout.split("new current keys:")[1].splitlines()
            if line.strip().endswith("ES256")
        )
        assert eventually(lambda: kid_of(token(new_secret).json()["access_token"]) == new_sig)
        published = {
            k["kid"] for k in http.get(f"{server.base_url}/.well-known/jwks.json").json()["keys"]
        }
        assert {old_kid, new_sig} <= published  # the retired key stays published

        access = token(new_secret).json()["access_token"]
        search = support.search_envelope(support.idtype("UIN", "1"), sender_id="spmis.live")
        assert run("partners", "remove", "spmis.live", "--config", config).exit_code == 0

        def refused() -> bool:
            response = http.post(
                server.url("crvs", "sync/search"),
                json=search,
                headers={"authorization": f"Bearer {access}"},
            )
            return response.status_code == 401

        assert eventually(refused)
    finally:
        http.close()
        server.stop()
        store.dispose()


# ---------------------------------------------------------------------------------------------
# help texts and the installed entry point


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["partners"],
        ["partners", "list"],
        ["partners", "show"],
        ["partners", "add"],
        ["partners", "update"],
        ["partners", "remove"],
        ["partners", "set-secret"],
        ["keys"],
        ["keys", "list"],
        ["keys", "rotate"],
        ["keys", "jwks"],
        ["audit"],
        ["audit", "verify"],
        ["audit", "show"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage: dcihub" in result.stdout


def test_installed_entry_point(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "dcihub"
    command = (
        [str(exe)]
        if exe.exists()
        else ([shutil.which("dcihub")] if shutil.which("dcihub") else None)
    )
    if command is None:
        pytest.skip("the dcihub entry point is not installed (pip install -e .)")
    env = {**os.environ, **ENV}
    top = subprocess.run([*command, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert top.returncode == 0, top.stderr
    for group in ("partners", "keys", "audit"):
        assert group in top.stdout
    config = tmp_path / "node.yaml"
    config.write_text("node_id: smoke.test\n")
    added = subprocess.run(
        [
            *command,
            "partners",
            "add",
            "smoke",
            "--client-id",
            "smoke",
            "--config",
            str(config),
            "--no-signature-required",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    secret = secret_from(added.stdout)
    assert PartnerRegistry.load(tmp_path / "partners.yaml").authenticate("smoke", secret)
    missing = subprocess.run(
        [*command, "audit", "verify", "--config", str(tmp_path / "absent.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error: cannot read configuration")
    assert len(missing.stderr.strip().splitlines()) == 1
