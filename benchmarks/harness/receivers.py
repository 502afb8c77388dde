"""Many callback receivers in one process: `--ports N` HTTP/1.1 servers on N free loopback
ports (asyncio, keep-alive, Content-Length bodies), each answering every POST with a DCI
`ACK`. Prints the ports as one JSON line on stdout once all listen, then appends one JSON line
per request received to `--log`: arrival time (`time.time()`), port, path, the envelope's
`header.message_id`, `header.action`, and for an on-subscribe the status of each item.

Run as a child process by the subscriptions benchmark: the receivers must not share a core
with the process that measures."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from typing import Any

import orjson

ACK = orjson.dumps({"message": {"ack_status": "ACK"}})
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
    + str(len(ACK)).encode()
    + b"\r\n\r\n"
    + ACK
)


class Log:
    def __init__(self, path: str) -> None:
        self.out = open(path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the process

    def write(self, entry: dict[str, Any]) -> None:
        self.out.write(orjson.dumps(entry) + b"\n")


def summary(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {"error": "not JSON"}
    header = doc.get("header") or {}
    message = doc.get("message") or {}
    out: dict[str, Any] = {"message_id": header.get("message_id"), "action": header.get("action")}
    if isinstance(message, dict) and "subscribe_response" in message:
        out["statuses"] = [i.get("status") for i in message["subscribe_response"]]
        out["reasons"] = [
            i.get("status_reason_message")
            for i in message["subscribe_response"]
            if i.get("status") != "succ"
        ][:3]
    if isinstance(message, dict) and "notify_event" in message:
        out["events"] = len(message["notify_event"])
    return out


class Receiver(asyncio.Protocol):
    def __init__(self, port: int, log: Log) -> None:
        self.port = port
        self.log = log
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            lines = head.split("\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            arrived = time.time()
            parts = lines[0].split(" ")
            path = parts[1] if len(parts) > 1 else "?"
            assert self.transport is not None
            self.transport.write(RESPONSE)
            self.log.write({"t": arrived, "port": self.port, "path": path, **summary(body)})


async def serve(count: int, log: Log) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    ports = []
    for _ in range(count):
        holder: dict[str, int] = {}
        server = await loop.create_server(
            lambda holder=holder: Receiver(holder["port"], log),  # type: ignore[misc]
            "127.0.0.1",
            0,
            backlog=64,
        )
        holder["port"] = server.sockets[0].getsockname()[1]
        ports.append(holder["port"])
        servers.append(server)
    sys.stdout.write(json.dumps({"ports": ports}) + "\n")
    sys.stdout.flush()
    await asyncio.Event().wait()  # until the benchmark stops this process


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ports", type=int, required=True)
    p.add_argument("--log", required=True)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.ports + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(serve(args.ports, Log(args.log)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
