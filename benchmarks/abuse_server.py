"""The server under attack (benchmarks/abuse.py): `spotfunnel serve` as a subprocess, /healthz and RSS poller, OPTIONS."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twilio.request_validator import RequestValidator

from spotfunnel.transports.sip.message import SipMessage, parse_message, SipParseError
from spotfunnel.transports.sip.udp import open_udp

__all__ = ["AUTH_TOKEN", "SALON_NUMBER", "Attack", "Monitor", "Outcome", "Sample", "ServerUnderTest",
           "sip_answers_options"]

AUTH_TOKEN = "abuse-benchmark-twilio-auth-token"  # the server checks every webhook against it, as in production
SALON_NUMBER = "+14155550100"  # the demo tenant's number (../shared/demo-tenant.md)
HOST = "127.0.0.1"
POLL_S = 0.075  # /healthz every 75 ms, as a load balancer's probe would (more often, to catch stalls)
PROBE_TIMEOUT_S = 2.0  # a /healthz slower than this counts as not answering


@dataclass
class Outcome:
    """What one attack sent, what it saw, and every expectation the server missed (a breach)."""

    sent: str
    notes: list[str] = field(default_factory=list)
    breaches: list[str] = field(default_factory=list)

    def check(self, held: bool, breach: str) -> None:
        """Record `breach` unless the expectation `held`."""
        if not held:
            self.breaches.append(breach)


@dataclass
class Attack:
    """The server and the scale one attack runs at (short: the CI smoke run)."""

    server: "ServerUnderTest"
    short: bool
    capacity: int  # calls the server takes at once (SPOTFUNNEL_MAX_CALLS as the server sees it)

    def scale(self, full: int, short: int) -> int:
        return short if self.short else full

    def seconds(self, full: float, short: float) -> float:
        return short if self.short else full


def free_port(kind: int) -> int:
    """A port nobody holds on loopback right now (TCP: SOCK_STREAM, UDP: SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Sample:
    """One probe: when, how long /healthz took (ms; None: no answer), the server's RSS, its active calls."""

    at: float
    healthz_ms: float | None
    rss_mb: float | None
    active_calls: int | None


def rss_mb(pid: int) -> float | None:
    """VmRSS of `pid` from /proc (None once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


class Monitor(threading.Thread):
    """Probes /healthz every POLL_S on its own thread (the attacks' event loop must not skew it) and samples RSS."""

    def __init__(self, port: int, pid: int) -> None:
        super().__init__(name="abuse-healthz-poller", daemon=True)
        self.port, self.pid = port, pid
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop_event.is_set():
            began = time.perf_counter()
            latency, active = None, None
            try:
                conn = conn or http.client.HTTPConnection(HOST, self.port, timeout=PROBE_TIMEOUT_S)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                body = json.loads(response.read() or b"{}")
                latency = (time.perf_counter() - began) * 1000.0
                active = body.get("active_calls") if isinstance(body, dict) else None
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn = None  # reconnect next time; this probe had no answer
            self.samples.append(Sample(time.monotonic(), latency, rss_mb(self.pid), active))
            self._stop_event.wait(max(0.0, POLL_S - (time.perf_counter() - began)))
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=PROBE_TIMEOUT_S + 1)

    def window(self, since: float, until: float) -> list[Sample]:
        return [s for s in list(self.samples) if since <= s.at <= until]


class ServerUnderTest:
    """`spotfunnel serve` on free loopback ports with a temporary database and a known Twilio auth token."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.http_port = free_port(socket.SOCK_STREAM)
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.db_path = workdir / f"abuse-{uuid.uuid4().hex[:8]}.db"
        self.log_path = workdir / "server.log"
        self.extra_env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.monitor: Monitor | None = None
        self.validator = RequestValidator(AUTH_TOKEN)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def sip(self) -> tuple[str, int]:
        return HOST, self.sip_port

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def sign(self, url: str, params: dict[str, str]) -> str:
        """X-Twilio-Signature for `url` + `params`, computed as Twilio computes it."""
        return str(self.validator.compute_signature(url, params))

    def start(self, ready_timeout_s: float = 240.0) -> None:
        """Start the server and wait until /healthz says it is ready (models loaded); raises if it never is."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "SPOTFUNNEL_"))}
        src = str(Path(__file__).resolve().parents[1] / "src")  # the checkout's code, installed or not
        env.update(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p), **self.extra_env)
        command = [sys.executable, "-c", "from spotfunnel.cli import app; app()", "serve", "--host", HOST,
                   "--port", str(self.http_port), "--sip-port", str(self.sip_port),
                   "--db", f"sqlite:///{self.db_path}", "--log-level", "info"]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        log.close()
        try:
            self._wait_ready(ready_timeout_s)
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise

    def _wait_ready(self, ready_timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + ready_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode} while starting; "
                                   f"its log:\n{self.log_tail()}")
            health = self.healthz_sync()
            if health is not None and health.get("status") in ("ok", "degraded"):
                self.monitor = Monitor(self.http_port, self.proc.pid)
                self.monitor.start()
                return
            time.sleep(0.5)
        raise RuntimeError(f"the server was not ready within {ready_timeout_s:.0f} s; its log:\n{self.log_tail()}")

    def stop(self) -> str:
        """SIGTERM, then SIGKILL after 10 s (the server never outlives the benchmark); says which it took."""
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None
        if self.proc is None or self.proc.poll() is not None:
            return "not running"
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
            return "SIGTERM did not stop it within 10 s: killed"
        return f"stopped on SIGTERM in {time.monotonic() - began:.1f} s"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss_mb(self) -> float | None:
        return rss_mb(self.pid)

    def log_bytes(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def healthz_sync(self, timeout_s: float = PROBE_TIMEOUT_S) -> dict[str, Any] | None:
        """The /healthz JSON (any status code), or None when the server does not answer in time."""
        conn = http.client.HTTPConnection(HOST, self.http_port, timeout=timeout_s)
        try:
            conn.request("GET", "/healthz")
            body = json.loads(conn.getresponse().read() or b"{}")
            return body if isinstance(body, dict) else None
        except (OSError, http.client.HTTPException, ValueError):
            return None
        finally:
            conn.close()

    async def healthz(self) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.healthz_sync)


async def sip_answers_options(server: tuple[str, int], timeout_s: float = 2.0, tries: int = 2) -> bool:
    """Whether the SIP socket answers an OPTIONS (any final response) within `timeout_s`, `tries` times over."""
    answered: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    branch = f"z9hG4bK{uuid.uuid4().hex[:16]}"

    def on_datagram(data: bytes, _addr: tuple[str, int]) -> None:
        try:
            msg = parse_message(data)
        except SipParseError:
            return
        if not msg.is_request and msg.branch == branch and (msg.status or 0) >= 200 and not answered.done():
            answered.set_result(True)

    sock = await open_udp(HOST, 0, on_datagram, "abuse-options")
    try:
        local = sock.address
        msg = SipMessage(method="OPTIONS", uri=f"sip:{server[0]}:{server[1]}")
        msg.add("Via", f"SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport")
        msg.add("Max-Forwards", "70")
        msg.add("From", f"<sip:probe@{local[0]}:{local[1]}>;tag={uuid.uuid4().hex[:8]}")
        msg.add("To", f"<sip:{server[0]}:{server[1]}>")
        msg.add("Call-ID", f"{uuid.uuid4().hex}@{local[0]}")
        msg.add("CSeq", "1 OPTIONS")
        for _ in range(tries):
            sock.send(msg.serialise(), server)
            try:
                return await asyncio.wait_for(asyncio.shield(answered), timeout_s)
            except asyncio.TimeoutError:
                continue
        return False
    finally:
        sock.close()
