"""Creating a partner with fresh credentials: client secret and a key pair for signing and one
for encryption (used by `dcihub partners add --generate`, the demo and the tests)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .keys import generate_key
from .partners import Partner
from .tokens import generate_secret


@dataclass
class Provisioned:
    partner: Partner
    client_secret: str
    private_jwks: dict[str, Any]  # give this to the partner; never keep it on the registry side


def provision_partner(
    sender_id: str, client_id: str, *, signing_alg: str = "ES256", **partner_fields: Any
) -> Provisioned:
    secret = generate_secret()
    keys = [generate_key("sig", signing_alg), generate_key("enc", "ECDH-ES+A256KW")]
    public = {"keys": [k.as_dict(private=False) for k in keys]}
    private = {"keys": [k.as_dict(private=True) for k in keys]}
    partner = Partner(sender_id=sender_id, client_id=client_id, jwks=public, **partner_fields)
    return Provisioned(partner, secret, private)
