"""The registry profiles. `PROFILES` maps the registry name used in URLs to its profile.

A registry is one profile (and, for the demo, one population builder): `register` adds a
profile defined anywhere (a plug-in, a test) and everything generic picks it up — endpoints,
store tables, OpenAPI document, registry documentation.
"""

from __future__ import annotations

from ..calls import SpecialEndpoint
from . import crvs, dr, ess, fr, ibr, social
from .base import Attribute, Entity, RegistryProfile

PROFILES: dict[str, RegistryProfile] = {
    p.name: p
    for p in (social.PROFILE, crvs.PROFILE, dr.PROFILE, fr.PROFILE, ibr.PROFILE, ess.PROFILE)
}


def register(profile: RegistryProfile) -> None:
    """Serve `profile` as one more registry (its name must be new)."""
    if profile.name in PROFILES:
        raise ValueError(f"a registry named {profile.name!r} is registered already")
    if not profile.name.isidentifier() or profile.name != profile.name.lower():
        raise ValueError(f"registry name {profile.name!r} must be a lower-case identifier")
    PROFILES[profile.name] = profile


def unregister(name: str) -> None:
    """Forget a registered profile (tests and plug-ins that unload)."""
    PROFILES.pop(name, None)


__all__ = [
    "PROFILES",
    "Attribute",
    "Entity",
    "RegistryProfile",
    "SpecialEndpoint",
    "register",
    "unregister",
]
