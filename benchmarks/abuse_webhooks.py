"""Webhook and stream-identity attacks (benchmarks/abuse.py): huge unsigned bodies, replayed/forged streams, routing."""
from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from pathlib import Path

import httpx

from abuse_server import HOST, Attack, Outcome
from abuse_twilio import CONNECT_TIMEOUT_S, SignedPeer, play, post_voice, stream_in, voice_form

__all__ = ["WEBHOOK_ATTACKS"]

MB = 1024 * 1024
CHUNK = b"Body=" + b"a" * (MB - 5)  # one form field that never ends: 1 MB per chunk


async def _post_body(port: int, total_mb: int, *, declared_mb: int | None, deadline_s: float) -> tuple[str, float]:
    """Stream an unsigned POST /twilio/voice of up to `total_mb` (chunked, or claiming `declared_mb`).

    Returns the server's status line (or what happened instead) and the MB it took before answering.
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), CONNECT_TIMEOUT_S)
    framing = ("Transfer-Encoding: chunked" if declared_mb is None else f"Content-Length: {declared_mb * MB}")
    writer.write(f"POST /twilio/voice HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                 f"Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n".encode())
    answer = asyncio.create_task(reader.readline())
    sent, end = 0, time.monotonic() + deadline_s
    try:
        while sent < total_mb and not answer.done() and time.monotonic() < end:
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if declared_mb is None else CHUNK)
            await asyncio.wait_for(writer.drain(), max(0.1, end - time.monotonic()))
            sent += 1
        if declared_mb is None and not answer.done():
            writer.write(b"0\r\n\r\n")
        line = await asyncio.wait_for(answer, 5.0)
        status = line.decode(errors="replace").strip() or "closed by the server, no answer"
    except (ConnectionError, asyncio.TimeoutError) as exc:
        closed = "closed by the server" if isinstance(exc, ConnectionError) else "no answer"
        status = (answer.result().decode(errors="replace").strip() if answer.done() and not answer.exception()
                  else f"{closed} ({type(exc).__name__})")
    finally:
        answer.cancel()
        writer.close()
    return status or "closed by the server, no answer", float(sent)


async def big_bodies(attack: Attack) -> Outcome:
    """Issue 8 #4: three huge unsigned webhook bodies at once, and one claiming 900 MB."""
    size = attack.scale(200, 30)
    out = Outcome(f"3 x {size} MB chunked + 1 claiming 900 MB, unsigned, to /twilio/voice")
    deadline = attack.seconds(8.0, 4.0)
    port = attack.server.http_port
    results = await asyncio.gather(*(_post_body(port, size, declared_mb=None, deadline_s=deadline) for _ in range(3)),
                                   _post_body(port, 2, declared_mb=900, deadline_s=deadline))
    for (status, taken), whole in zip(results, [size] * 3 + [900]):
        out.notes.append(f"'{status[:40]}' after {taken:.0f} MB")
        # a reset long before the end is a refusal too: the server closed on a body it had not read, and
        # TCP's RST can discard its 413 before we read it
        refused = " 413 " in f"{status} " or (status.startswith("closed by the server") and taken < whole / 4)
        out.check(refused, f"a huge body got '{status[:60]}' instead of 413 after {taken:.0f} MB")
    return out


def _db_text(db: Path) -> str:
    """Everything the server stored, as SQL text (to look for a caller id without knowing the schema)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2.0) as conn:
            return "\n".join(conn.iterdump())
    except sqlite3.Error:
        return ""


async def _stored(db: Path, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in await asyncio.to_thread(_db_text, db):
            return True
        await asyncio.sleep(0.25)
    return False


FORGED_CALLER = "+19990007531"  # distinctive digits: found in the database only if stored
FORGED_PARAMS = {"caller": FORGED_CALLER, "caller_id": FORGED_CALLER, "tenant": "someone-else", "lockstep": "1",
                 "setup": "scripted", "direction": "outbound"}


async def replayed_stream(attack: Attack) -> Outcome:
    """Issue 8 #9: a stream URL used once (with forged identity in `start`), then replayed."""
    out = Outcome("one signed stream used with a forged caller/tenant, then replayed")
    caller = f"+1415556{secrets.randbelow(10_000):04d}"
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        peer = None
        for _ in range(20):  # a seat may take a moment to free
            form = voice_form(caller)
            found = stream_in((await post_voice(attack.server, http, form)).text)
            if found:
                url, params = found
                peer = SignedPeer(url, {**params, **FORGED_PARAMS}, attack.server.sign(url, {}),
                                  caller=FORGED_CALLER, called="+15550000000", call_sid=form["CallSid"])
                break
            await asyncio.sleep(0.1)
    if peer is None:
        out.breaches.append("no call to attack: the webhook refused it as busy")
        return out
    await peer.connect()
    await play(peer, 1.5)
    out.check(peer.media_received > 0 and not peer.closed, "the first, valid use of the stream URL was not served")
    await peer.hang_up()
    replay = SignedPeer(peer.url, peer.custom_parameters, peer.signature, caller=caller, call_sid=peer.call_sid)
    try:
        await replay.connect()
        await play(replay, 1.0)
        replay_served = replay.media_received > 0
        await replay.hang_up()
    except Exception:  # noqa: BLE001 - a refused handshake (any error opening it) is what we want
        replay_served = False
    out.notes.append(f"first use: {peer.media_received} agent frames; replay: "
                     f"{'served' if replay_served else 'refused'} (code {replay.close_code})")
    out.check(not replay_served, "a replayed stream URL and signature opened a second call")
    honest = await _stored(attack.server.db_path, caller.removeprefix("+"), attack.seconds(8.0, 5.0))
    forged = FORGED_CALLER.removeprefix("+1") in await asyncio.to_thread(_db_text, attack.server.db_path)
    out.notes.append(f"stored caller: webhook's {'yes' if honest else 'not (yet)'}, forged {'YES' if forged else 'no'}")
    out.check(not forged, "the caller id forged in the start message reached the database")
    return out


async def suffix_routing(attack: Attack) -> Outcome:
    """Issue 8 #10: dialled numbers that are only a suffix of the salon's must not reach it."""
    numbers = ["0", "100", "+100", "0100"]
    out = Outcome(f"signed webhooks To={','.join(numbers)}")
    async with httpx.AsyncClient(timeout=CONNECT_TIMEOUT_S) as http:
        for number in numbers:
            response = await post_voice(attack.server, http, voice_form("+14155550166", called=number))
            connected = stream_in(response.text) is not None
            out.notes.append(f"To={number}: {'STREAM' if connected else f'refused ({response.status_code})'}")
            out.check(not connected, f"To={number} reached a tenant by suffix")
            if connected:  # claim the ticket at once so it does not hold a seat
                found = stream_in(response.text)
                assert found is not None
                url, params = found
                await _claim_and_drop(SignedPeer(url, params, attack.server.sign(url, {})))
    return out


async def _claim_and_drop(peer: SignedPeer) -> None:
    try:
        await peer.connect()
        await peer.hang_up()
    except Exception:  # noqa: BLE001 - the breach is already counted; this only frees the seat
        pass


WEBHOOK_ATTACKS = {
    "webhook-huge-bodies": big_bodies,
    "stream-replay-forged": replayed_stream,
    "tenant-suffix-routing": suffix_routing,
}
