"""Request limits at the edge, on a real server: bodies refused early (413) and oversized WebSocket messages closed."""
from __future__ import annotations

import asyncio

import pytest
import websockets

from spotfunnel.api.limits import DEFAULT_BODY_CAP, WS_MAX_MESSAGE_BYTES
from spotfunnel.transports.twilio_peer import answer_like_twilio

from twilio_support import edge_app, running_app

TOKEN = "test-auth-token"


async def _raw_request(base: str, head: str, body_chunks: list[bytes]) -> bytes:
    """Send a request over a plain socket, chunk by chunk, stopping early once the server has answered."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode())
    answer = asyncio.ensure_future(reader.read(4096))
    try:
        for chunk in body_chunks:
            if answer.done():
                break
            writer.write(chunk)
            await writer.drain()
        return await asyncio.wait_for(answer, 10)
    finally:
        answer.cancel()
        writer.close()


async def test_declared_oversized_body_is_refused_before_it_is_sent() -> None:
    async with running_app(edge_app(TOKEN)) as base:
        head = ("POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {900 * 1024 * 1024}\r\n\r\n")
        # not one byte of the 900 MB body is sent: the answer must come from the headers alone
        answer = await _raw_request(base, head, [])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request body too large for /twilio/voice" in answer and str(DEFAULT_BODY_CAP).encode() in answer


async def test_chunked_body_is_counted_and_refused_past_the_cap() -> None:
    async with running_app(edge_app(TOKEN)) as base:
        head = ("POST /twilio/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                "Transfer-Encoding: chunked\r\n\r\n")
        piece = b"a" * 16 * 1024
        chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        answer = await _raw_request(base, head, [chunk] * 64 + [b"0\r\n\r\n"])  # 1 MB, unsigned
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]  # not 403: refused before the signature check read it


async def test_small_webhook_bodies_still_reach_the_routes() -> None:
    async with running_app(edge_app(TOKEN)) as base:
        body = b"CallSid=CA1&From=%2B14155550111&To=%2B14155550100"
        head = ("POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        answer = await _raw_request(base, head, [body])
    assert answer.startswith(b"HTTP/1.1 403")  # unsigned, so the signature check ran on the whole small body


async def test_oversized_websocket_message_closes_the_socket_unparsed() -> None:
    async with running_app(edge_app("")) as base:
        peer = await answer_like_twilio(base, caller="+14155550111", called="+14155550100")  # a real ticket
        async with websockets.connect(peer.url, max_size=None) as ws:
            await ws.send("x" * (WS_MAX_MESSAGE_BYTES + 1))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big
