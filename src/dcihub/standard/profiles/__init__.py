"""One profile per registry. `PROFILES` maps the registry name used in URLs to its profile."""

from __future__ import annotations

from . import crvs, dr, ess, fr, ibr, social
from .base import Attribute, Entity, RegistryProfile, SpecialEndpoint

PROFILES: dict[str, RegistryProfile] = {
    p.name: p
    for p in (social.PROFILE, crvs.PROFILE, dr.PROFILE, fr.PROFILE, ibr.PROFILE, ess.PROFILE)
}

__all__ = ["PROFILES", "Attribute", "Entity", "RegistryProfile", "SpecialEndpoint"]
