"""Hardening against one-request denial of service and other abuse (issue: hardening).

Each test here failed before its fix. They run against a real server on loopback, on SQLite and
on PostgreSQL (the session's `server` fixture)."""

from __future__ import annotations

import threading

import httpx
import orjson

from support import idtype, search_envelope


def _healthz_while(server, client, send) -> tuple[float, list[httpx.Response]]:
    """Start `send()` in three threads, then ask /healthz; return how long /healthz took to
    answer and the responses of the hostile requests."""
    import time

    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(send())) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)  # the hostile requests are on their way first
    started = time.monotonic()
    health = httpx.get(f"{server.base_url}/healthz", timeout=30)
    took = time.monotonic() - started
    for thread in threads:
        thread.join(timeout=120)
    assert health.status_code == 200
    return took, answers


def test_a_megabyte_of_junk_in_signature_is_refused_and_stalls_nothing(server, client) -> None:
    """1 MB of letters after an HTTP-signature parameter: before the fix the parameter scan was
    quadratic on the event loop (40 KB stalled the node for 20 s)."""
    junk = 'signature="x", created="1", ' + "a" * (1024 * 1024)
    token = client.token()

    def send() -> httpx.Response:
        envelope = search_envelope(idtype("UIN", "1"), sender_id=client.sender_id)
        body = orjson.dumps({"signature": junk, **envelope})
        return httpx.post(server.url("crvs", "sync/search"), content=body, timeout=120,
                          headers={"content-type": "application/json",
                                   "authorization": f"Bearer {token}"})

    took, answers = _healthz_while(server, client, send)
    assert took < 1.0, f"/healthz waited {took:.1f} s behind the junk signatures"
    assert len(answers) == 3
    for answer in answers:
        assert answer.status_code == 400, answer.text
        error = answer.json()["message"]["error"]
        assert error["code"] == "err.signature.invalid"
        assert "at most" in error["message"]
