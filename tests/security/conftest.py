"""Fixtures for the security-layer tests: keys of each type and a realistic ~2 KB envelope."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dcihub.security.keys import generate_key


@pytest.fixture(scope="session")
def keys() -> dict[str, Any]:
    """One freshly generated private key per algorithm (session-wide: RSA is slow)."""
    return {
        alg: generate_key(use, alg)
        for use, alg in [
            ("sig", "ES256"),
            ("sig", "EdDSA"),
            ("sig", "RS256"),
            ("enc", "RSA-OAEP-256"),
            ("enc", "ECDH-ES+A256KW"),
        ]
    }


@pytest.fixture(scope="session")
def other_keys() -> dict[str, Any]:
    """A second, unrelated key per algorithm (the "attacker" or "wrong recipient")."""
    return {
        alg: generate_key(use, alg)
        for use, alg in [
            ("sig", "ES256"),
            ("sig", "EdDSA"),
            ("sig", "RS256"),
            ("enc", "RSA-OAEP-256"),
            ("enc", "ECDH-ES+A256KW"),
        ]
    }


_HEADER = {
    "version": "1.0.0",
    "message_id": "123e4567-e89b-12d3-a456-426614174000",
    "message_ts": "2025-01-01T10:00:00+00:00",
    "action": "search",
    "sender_id": "spmis.example.org",
    "sender_uri": "https://spmis.example.org/dci/callback/on-search",
    "receiver_id": "crvs.example.org",
    "total_count": 6,
    "is_msg_encrypted": False,
    "meta": {"note": "Zoë Ñúñez — 漢字 😀"},
}
_MESSAGE = {
    "transaction_id": "txn-0001",
    "search_request": [
        {
            "reference_id": f"ref-{i}",
            "timestamp": "2025-01-01T10:00:00Z",
            "search_criteria": {
                "reg_type": "crvs",
                "query_type": "idtype-value",
                "query": {"type": "UIN", "value": str(1000 + i)},
                "sort": [{"attribute_name": "birthdate", "sort_order": "asc"}],
                "pagination": {"page_size": 10, "page_number": 1},
            },
            "locale": "eng",
        }
        for i in range(6)
    ],
}


@pytest.fixture
def header() -> dict[str, Any]:
    return copy.deepcopy(_HEADER)


@pytest.fixture
def message() -> dict[str, Any]:
    return copy.deepcopy(_MESSAGE)
