"""The security steps of the inbound pipeline, and the outbound signing of replies.

    authenticate  Bearer access token issued by our token endpoint; scope for registry+action
    check_header  sender_id = the token's partner; receiver_id = us; message_ts within the
                  allowed skew; sender_uri under the partner's registered prefixes
    verify        signature of {header, message} (three profiles, auto-detected) against the
                  partner's keys; required unless the partner may send unsigned messages;
                  skipped for a partner whose signatures a gateway in front of us verifies
    decrypt       `is_msg_encrypted` messages (flattened JWE) with our key
    replayed      (sender_id, message_id) seen within the window: the original reply again
    outbound      replies to the partner: encrypt (if it asks for it), then sign
    audit_entry   what the audit trail records of this exchange (never record content)

Every refusal is a DCIError carrying the standard's code (docs/security.md has the table).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

import orjson
from starlette.requests import Request

from ..config import Settings
from ..security.callbacks import check_sender_uri
from ..security.canonical import CanonicalizationError, envelope_bytes
from ..security.errors import SecurityError, TokenError
from ..security.jwe import (
    decrypt_plaintext,
    encrypt_message,
    is_encrypted_message,
    parse_plaintext,
)
from ..security.keys import KeyManager
from ..security.partners import JwksResolver, Partner, PartnerRegistry
from ..security.signatures import HTTP_SIG, inspect_signature, sign, verify
from ..security.tokens import TokenClaims, TokenIssuer, bearer_token
from ..standard.codes import ErrorCode, HeaderReason
from ..standard.envelope import parse_timestamp
from ..standard.errors import DCIError, MessageRejected
from ..store import Store
from ..store.access import Reader
from ..store.audit import AuditEntry
from .pipeline import Caller, EndpointSpec, Guard, Inbound, Reply, refuse_deep_nesting

log = logging.getLogger("dcihub.guard")

# the audit trail's signature verdict for a partner whose signatures a gateway verifies
NOT_VERIFIED_BY_POLICY = "not verified (partner policy)"


class TokenCache:
    """Verified access tokens by their text, until they expire (verification costs more than
    the lookup of a small registry record)."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._items: OrderedDict[str, TokenClaims] = OrderedDict()

    def get(self, token: str) -> TokenClaims | None:
        claims = self._items.get(token)
        if claims is None:
            return None
        if claims.expires_at <= time.time():
            self._items.pop(token, None)
            return None
        return claims

    def put(self, token: str, claims: TokenClaims) -> None:
        self._items[token] = claims
        if len(self._items) > self.size:
            self._items.popitem(last=False)


class Security:
    """Keys, partners, token issuer and partner key resolvers of one node."""

    def __init__(
        self,
        settings: Settings,
        partners: PartnerRegistry,
        keys: KeyManager,
        issuer: TokenIssuer,
        fetch: Any = None,
    ) -> None:
        self.settings = settings
        self.options = settings.security
        self.partners = partners
        self.keys = keys
        self.issuer = issuer
        self.fetch = fetch
        self._resolvers: dict[str, JwksResolver] = {}
        if any(p.signature_profile == HTTP_SIG for p in partners):
            keys.ensure_signing_key("EdDSA")  # published from the start (see `reply_key`)

    def resolver(self, partner: Partner) -> JwksResolver:
        found = self._resolvers.get(partner.sender_id)
        if found is None or found.partner is not partner:
            found = JwksResolver(
                partner, self.fetch, min_refetch_seconds=self.options.jwks_refetch_seconds
            )
            self._resolvers[partner.sender_id] = found
        return found

    def our_ids(self, registry: str) -> set[str]:
        return {self.settings.registry_id(registry), self.settings.node_id}


class SecurityGuard(Guard):
    def __init__(self, security: Security, store: Store) -> None:
        self.security = security
        self.store = store
        self.tokens = TokenCache()
        # (sender_id, message_id) being processed in this process -> id() of its Inbound
        self.inflight: dict[tuple[str, str], int] = {}

    # ----------------------------------------------------------------------------- inbound

    async def authenticate(self, request: Request, endpoint: EndpointSpec) -> Caller:
        try:
            token = bearer_token(request.headers.get("authorization"))
            claims = self.tokens.get(token)
            if claims is None:
                claims = self.security.issuer.verify(token)
                self.tokens.put(token, claims)
        except TokenError as exc:
            raise DCIError(ErrorCode.REQUEST_UNAUTHORIZED, exc.message, 401) from None
        partner = self.security.partners.get(claims.sender_id)
        if partner is None:
            raise CallerRefused(
                ErrorCode.REQUEST_UNAUTHORIZED,
                f"the access token's partner '{claims.sender_id}' is no longer registered here",
                401,
                partner=claims.sender_id,
                client_id=claims.client_id,
            )
        action = endpoint.scope_action
        if not (
            claims.allows(endpoint.registry, action) and partner.allows(endpoint.registry, action)
        ):
            # the token was valid: the audit trail names who tried
            raise CallerRefused(
                ErrorCode.REQUEST_FORBIDDEN,
                f"partner '{partner.sender_id}' may not use '{action}' on the "
                f"{endpoint.registry} registry (token scope "
                f"'{' '.join(sorted(claims.scopes)) or 'none'}')",
                403,
                partner=partner.sender_id,
                client_id=claims.client_id,
            )
        return Caller(partner, claims, self.security.resolver(partner))

    async def check_header(self, inbound: Inbound) -> None:
        partner = _caller(inbound).partner
        header = inbound.header
        if header.sender_id != partner.sender_id:
            raise DCIError(
                ErrorCode.SENDER_ID_INVALID,
                f"header.sender_id '{header.sender_id}' is not the partner of the "
                f"access token ('{partner.sender_id}')",
            )
        receiver = header.receiver_id
        ours = self.security.our_ids(inbound.registry)
        if receiver and receiver not in ours:
            raise DCIError(
                ErrorCode.RECEIVER_ID_INVALID,
                f"header.receiver_id '{receiver}' is not this registry; send to "
                f"'{self.security.settings.registry_id(inbound.registry)}'",
            )
        self._check_freshness(inbound)
        uri = getattr(header, "sender_uri", None)
        if uri and inbound.endpoint.asynchronous:
            try:
                check_sender_uri(uri, partner)
            except SecurityError as exc:
                raise DCIError(ErrorCode.SENDER_URI_INVALID, exc.message) from None

    def _check_freshness(self, inbound: Inbound) -> None:
        skew = self.security.options.clock_skew
        sent = parse_timestamp(inbound.header.message_ts).timestamp()
        off = sent - time.time()
        if abs(off) > skew:
            when = "in the future" if off > 0 else "old"
            raise MessageRejected(
                HeaderReason.MESSAGE_TS_INVALID,
                f"header.message_ts {inbound.header.message_ts} is {abs(off):.0f} s {when}; this "
                f"registry accepts at most {skew:.0f} s of clock difference: check the sender's "
                "clock",
            )

    async def verify(self, inbound: Inbound) -> None:
        ctx = _caller(inbound)
        partner = ctx.partner
        if not partner.verifies_signatures:  # the partner's gateway did (its entry says so)
            ctx.signature = NOT_VERIFIED_BY_POLICY
            return
        if not inbound.signature:
            if partner.signature_required:
                raise DCIError(
                    ErrorCode.SIGNATURE_MISSING,
                    "the message has no signature; partner "
                    f"'{partner.sender_id}' must sign {{header, message}} (detached "
                    "JWS by default, see the registry's documentation)",
                )
            return
        try:
            info = inspect_signature(inbound.signature)
            await ctx.resolver.refresh_for(info.kid)
            verified = verify(
                inbound.signature,
                inbound.raw_header,
                inbound.message,
                ctx.resolver.resolve,
                info=info,
            )
        except SecurityError as exc:
            ctx.signature = "invalid"
            raise DCIError(ErrorCode.SIGNATURE_INVALID, exc.message) from None
        ctx.signature = f"{verified.profile}:{verified.kid}"

    async def decrypt(self, inbound: Inbound) -> None:
        ctx = _caller(inbound)
        if inbound.header.is_msg_encrypted:
            if not is_encrypted_message(inbound.message):
                raise DCIError(
                    ErrorCode.ENCRYPTION_INVALID,
                    "header.is_msg_encrypted is true but message is not an "
                    "EncryptedMessage (flattened JWE: header, encrypted_key, iv, "
                    "ciphertext, tag)",
                )
            try:
                plaintext = decrypt_plaintext(inbound.message, self.security.keys.decryption_key)
                message = parse_plaintext(plaintext)
            except SecurityError as exc:
                raise DCIError(ErrorCode.ENCRYPTION_INVALID, exc.message) from None
            refuse_deep_nesting(plaintext, "the decrypted message")  # as a body is checked
            inbound.message = message
            ctx.encrypted = True
        elif ctx.partner.require_encryption:
            raise DCIError(
                ErrorCode.ENCRYPTION_INVALID,
                f"partner '{ctx.partner.sender_id}' must encrypt its messages "
                "(header.is_msg_encrypted true, message as EncryptedMessage)",
            )

    async def replayed(self, inbound: Inbound) -> tuple[int, bytes] | None:
        key = (inbound.sender_id, inbound.header.message_id)
        window = self.security.options.replay_window
        inbound.request_digest = request_digest(inbound)
        found = await self.store.access.read(self._find, key, window, light=True)
        if found is not None:
            status, body, digest = found
            if digest != inbound.request_digest:  # the id was used for another request
                raise DCIError(
                    ErrorCode.REQUEST_BAD,
                    f"message_id '{key[1]}' was used already (rjct.message_id.duplicate) for "
                    "another message or at another endpoint of this node; only the identical "
                    "message sent again to the same endpoint gets the original reply: send "
                    "this one with a new message_id",
                    409,
                )
            if not body:  # a reply whose copy is not kept (too large, or aged out)
                raise DCIError(
                    ErrorCode.REQUEST_BAD,
                    f"message_id '{key[1]}' was answered already "
                    "(rjct.message_id.duplicate); no copy of that reply is kept (a reply with "
                    f"records is kept {self.security.options.replay_reply_seconds:.0f} s, and "
                    f"only up to {self.security.options.replay_reply_max_bytes} bytes): send "
                    "a new message with a new message_id",
                    409,
                )
            return status, body
        if key in self.inflight:
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                f"message_id '{key[1]}' is being processed already "
                "(rjct.message_id.duplicate); its reply will follow",
                409,
            )
        self.inflight[key] = id(inbound)
        return None

    async def original_reply(self, inbound: Inbound) -> tuple[int, bytes] | None:
        key = (inbound.sender_id, inbound.header.message_id)
        window = self.security.options.replay_window
        found = await self.store.access.read(self._find, key, window, light=True)
        if found is None:
            return None
        status, body, digest = found
        if digest != inbound.request_digest or not body:
            return None
        return status, body

    def _find(
        self, reader: Reader, key: tuple[str, str], window: float
    ) -> tuple[int, bytes, str | None] | None:
        return self.store.replay.find_dbapi(reader.dbapi(), reader.dialect, key[0], key[1], window)

    def remember(self, inbound: Inbound) -> bool:
        return True

    def replay_copy(self, reply: bytes) -> bytes:
        # a large reply (records) is not stored a second time; its message id still is
        return reply if len(reply) <= self.security.options.replay_reply_max_bytes else b""

    def registry_id(self, registry: str) -> str:
        return self.security.settings.registry_id(registry)

    def release(self, inbound: Inbound) -> None:
        # only the message that claimed the id frees it: a duplicate refused with 409 (or
        # refused earlier) must not let a third copy in while the first is still running
        key = (inbound.sender_id, inbound.header.message_id)
        if self.inflight.get(key) == id(inbound):
            del self.inflight[key]

    # ----------------------------------------------------------------------------- outbound

    def outbound(self, inbound: Inbound, reply: Reply) -> dict[str, Any]:
        if not reply.is_envelope:
            return reply.body
        ctx = _caller(inbound)
        # A partner allowed unsigned messages may also ask for unsigned sync replies to its
        # unsigned requests (`sign_replies: false`); everything else is signed.
        unsigned_ok = not ctx.partner.sign_replies and ctx.signature == "unsigned"
        return seal(
            reply.body,
            ctx.partner,
            ctx.resolver,
            self.security.keys,
            encrypt=ctx.partner.encrypt_replies or ctx.encrypted,
            sign_reply=not unsigned_ok,
        )

    # ----------------------------------------------------------------------------- audit

    def audit_entry(
        self,
        endpoint: EndpointSpec,
        request: Request,
        inbound: Inbound | None,
        caller: Caller | None,
        status: int,
        body: dict[str, Any],
        error: DCIError | None,
        replay: bool,
        correlation_id: str,
    ) -> AuditEntry | None:
        if not self.security.options.audit:
            return None
        try:
            return self._audit_entry(
                endpoint, request, inbound, caller, status, error, replay, correlation_id
            )
        except Exception as exc:  # a defect: still record the exchange, as far as known
            log.exception("could not build the audit entry of %s", endpoint.url_path)
            return AuditEntry(
                direction="in",
                action=endpoint.action,
                registry=endpoint.registry,
                endpoint=f"/registry/{endpoint.path}",
                status=status,
                correlation_id=correlation_id,
                partner=caller.partner.sender_id if caller is not None else None,
                remote=request.client.host if request.client else None,
            ).minimal(type(exc).__name__)

    def _audit_entry(
        self,
        endpoint: EndpointSpec,
        request: Request,
        inbound: Inbound | None,
        caller: Caller | None,
        status: int,
        error: DCIError | None,
        replay: bool,
        correlation_id: str,
    ) -> AuditEntry:
        header = inbound.header if inbound is not None else None
        message = inbound.message if inbound is not None else None
        # a header that did not validate: its ids as sent (cut by the audit trail if long)
        raw = inbound.raw_header if inbound is not None and header is None else {}
        # a token that verified but was refused (403, or its partner is gone) still names who
        partner: str | None = None
        client_id: str | None = None
        if caller is not None:
            partner, client_id = caller.partner.sender_id, caller.claims.client_id
        elif isinstance(error, CallerRefused):
            partner, client_id = error.partner, error.client_id
        # a whole-message rejection records its rjct.* reason (e.g. rjct.message_ts.invalid)
        if replay:
            outcome = "replay"
        elif isinstance(error, MessageRejected):
            outcome = error.reason
        else:
            outcome = error.code if error is not None else "ok"
        transaction_id = message.get("transaction_id") if isinstance(message, dict) else None
        return AuditEntry(
            direction="in",
            action=endpoint.action,
            outcome=outcome,
            partner=partner,
            client_id=client_id,
            registry=endpoint.registry,
            endpoint=f"/registry/{endpoint.path}",
            status=status,
            message_id=header.message_id if header is not None else raw.get("message_id"),
            claimed_sender=header.sender_id if header is not None else raw.get("sender_id"),
            transaction_id=transaction_id,
            correlation_id=correlation_id,
            signature=caller.signature if caller is not None else "none",
            encrypted=caller is not None and caller.encrypted,
            # records returned: none when the reply was a refusal (e.g. it could not be sealed)
            records=list(inbound.records) if inbound is not None and error is None else [],
            remote=request.client.host if request.client else None,
        )


class CallerRefused(DCIError):
    """A refusal of a caller whose token did verify (its partner is gone, or the call is out
    of its scope): the audit trail still names that partner and client."""

    partner: str
    client_id: str

    def __init__(
        self, code: str, message: str, http_status: int, *, partner: str, client_id: str
    ) -> None:
        super().__init__(code, message, http_status)
        self.partner = partner
        self.client_id = client_id


def _caller(inbound: Inbound) -> Caller:
    """The caller `authenticate` established (every later step of this guard runs after it)."""
    assert inbound.caller is not None
    return inbound.caller


def request_digest(inbound: Inbound) -> str:
    """SHA-256 (hex) of the endpoint's path and the canonical `{header, message}` as received
    (the message as sent, encrypted or not; the signature is left out, so a message signed
    again is still the same request)."""
    try:
        body = envelope_bytes(inbound.raw_header, inbound.wire_message)
    except (CanonicalizationError, TypeError, ValueError):  # e.g. a float JCS cannot write
        try:
            body = orjson.dumps(
                {"header": inbound.raw_header, "message": inbound.wire_message},
                option=orjson.OPT_SORT_KEYS,
            )
        except (TypeError, ValueError):  # nested deeper than JSON writers go
            raise DCIError(
                ErrorCode.REQUEST_BAD,
                "the message is nested too deeply to be read as JSON; flatten it",
            ) from None
    digest = hashlib.sha256(inbound.endpoint.url_path.encode())
    digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def reply_key(keys: KeyManager, profile: str) -> Any:
    """Our key to sign with `profile`: the main signing key, except for the Ed25519
    HTTP-signature profile, which needs an Ed25519 key (made on first use if the main key has
    another algorithm, and kept as an additional published key)."""
    if profile == HTTP_SIG:
        return keys.ensure_signing_key("EdDSA")
    return keys.signing_key()


def seal(
    envelope: dict[str, Any],
    partner: Partner,
    resolver: JwksResolver,
    keys: KeyManager,
    encrypt: bool,
    sign_reply: bool = True,
) -> dict[str, Any]:
    """Outbound mirror of the pipeline: encrypt (when asked), then sign for `partner`."""
    header = dict(envelope["header"])
    message = envelope.get("message")
    if encrypt and message is not None:
        recipient = resolver.encryption_key()
        if recipient is None:
            raise DCIError(
                ErrorCode.ENCRYPTION_INVALID,
                f"partner '{partner.sender_id}' asks for encrypted replies but "
                "publishes no encryption key (use 'enc') in its JWKS",
                400,
            )
        message = encrypt_message(message, recipient)
        header["is_msg_encrypted"] = True
    if not sign_reply:
        unsigned: dict[str, Any] = {"header": header}
        if message is not None:
            unsigned["message"] = message
        return unsigned
    signature = sign(
        header,
        message,
        reply_key(keys, partner.signature_profile),
        partner.signature_profile,
        sender_id=header.get("sender_id"),
    )
    out: dict[str, Any] = {"signature": signature, "header": header}
    if message is not None:
        out["message"] = message
    return out
