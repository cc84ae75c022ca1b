// SpotFunnel's talk page: a call from the microphone over WebRTC, falling back to WebSocket PCM (16 kHz) when WebRTC fails.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const CONNECT_TIMEOUT_MS = 8000;
const ICE_GATHER_TIMEOUT_MS = 3000;

// What a test (or a curious developer in the console) can read about the call.
const call = {
  state: "idle",          // idle | connecting | live | ending | ended | failed
  transport: null,        // "webrtc" | "ws"
  events: [],             // every message the server sent, in order, stamped at_ms since Call
  startedAt: 0,           // performance.now() when Call was pressed
  outcome: null,          // the "ended" message
  error: null,
  fallbackReason: null,   // why WebRTC was given up, when it was
  stats: { agentFrames: 0, agentLoudFrames: 0, framesSent: 0 },
};
window.spotfunnel = call;

let mic = null;      // MediaStream
let pc = null;       // RTCPeerConnection
let channel = null;  // RTCDataChannel

function setStatus(text) { $("status").textContent = text; }

function showError(text) {
  call.error = text;
  $("error").textContent = text;
  $("error").hidden = false;
}

function clearError() { $("error").hidden = true; $("error").textContent = ""; call.error = null; }

function setState(state) {
  call.state = state;
  const busy = state === "connecting" || state === "live" || state === "ending";
  $("call").disabled = busy;
  $("hangup").disabled = !busy;
  $("tenant").disabled = busy;
}

// ---- the transcript -------------------------------------------------------------------------
const agentLines = new Map(); // speech id -> <li>

function addLine(role, text) {
  const li = document.createElement("li");
  li.className = role;
  li.textContent = text;
  $("transcript").appendChild(li);
  li.scrollIntoView({ block: "nearest" });
  return li;
}

function showInterrupted(heardList) {
  // The interrupted speeches are the ones not yet fully played, oldest first.
  const pending = [...agentLines.values()].filter((li) => !li.classList.contains("heard") && !li.classList.contains("interrupted"));
  heardList.forEach((heard, i) => {
    const li = pending[i];
    if (!li) return;
    const full = li.dataset.text || "";
    li.textContent = heard || "";
    const rest = full.startsWith(heard) ? full.slice(heard.length) : "";
    if (rest) {
      const span = document.createElement("span");
      span.className = "unheard";
      span.textContent = rest;
      li.appendChild(span);
    }
    li.classList.remove("queued", "speaking");
    li.classList.add("interrupted");
    if (!heard) li.classList.add("unheard-all");
  });
}

function onServerMessage(msg) {
  call.events.push(Object.assign({ at_ms: Math.round(performance.now() - call.startedAt) }, msg));
  switch (msg.type) {
    case "caller":
      addLine("caller", msg.text);
      break;
    case "agent": {
      const li = addLine("agent queued", msg.text);
      li.dataset.text = msg.text;
      agentLines.set(msg.id, li);
      break;
    }
    case "agent_audio": {
      const li = agentLines.get(msg.id);
      if (li) { li.classList.remove("queued"); li.classList.add("speaking"); }
      if (call.state === "connecting") { setState("live"); setStatus("Connected: talk to the agent."); }
      break;
    }
    case "agent_heard": {
      const li = agentLines.get(msg.id);
      if (li) { li.classList.remove("queued", "speaking"); li.classList.add("heard"); }
      break;
    }
    case "interrupted":
      showInterrupted(msg.heard || []);
      break;
    case "hangup":
      setStatus("The agent ended the call.");
      break;
    case "transfer":
      setStatus(`The agent is handing this call to a person at ${msg.to} (a browser call cannot be bridged; call that number).`);
      break;
    case "issue":
      console.warn("SpotFunnel protocol issue:", msg.message);
      break;
    case "ended":
      showOutcome(msg);
      finish();
      break;
    case "refused":
      showError(`The server refused the call: ${msg.message}`);
      finish();
      break;
    default:
      break;
  }
}

const OUTCOMES = {
  booked: "Your appointment is booked.",
  rescheduled: "Your appointment was moved.",
  cancelled: "Your appointment was cancelled.",
  answered: "The agent answered your question.",
  transferred: "The call was handed to a person.",
  abandoned: "The call ended before anything was settled.",
};

function showOutcome(msg) {
  call.outcome = msg;
  $("outcome").hidden = false;
  let text = OUTCOMES[msg.outcome] || `Outcome: ${msg.outcome || "none"}.`;
  if (msg.error) text += ` (${msg.error})`;
  $("outcome-text").textContent = text;
  const booking = (msg.bookings || []).find((b) => b.status === "active") || (msg.bookings || [])[0];
  if (booking) {
    $("booking").hidden = false;
    $("booking-service").textContent = booking.service;
    $("booking-when").textContent = booking.when;
    $("booking-name").textContent = booking.name;
    $("booking-phone").textContent = booking.phone;
  }
  setStatus("Call ended.");
}

// ---- control to the server ------------------------------------------------------------------
function sendControl(msg) {
  const text = JSON.stringify(msg);
  if (channel && channel.readyState === "open") channel.send(text);
  else if (ws && ws.readyState === WebSocket.OPEN) ws.send(text);
  else return false;
  return true;
}

function pressKey(digit) {
  if (call.state !== "live" && call.state !== "connecting") return;
  if (sendControl({ type: "dtmf", digit })) addLine("caller dtmf-local", `(keypad ${digit})`);
}

// ---- WebRTC ---------------------------------------------------------------------------------
function waitFor(check, events, target, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { cleanup(); reject(new Error(`${what} timed out after ${timeoutMs / 1000} s`)); }, timeoutMs);
    const onChange = () => {
      let result;
      try { result = check(); } catch (err) { cleanup(); reject(err); return; }
      if (result) { cleanup(); resolve(); }
    };
    const cleanup = () => { clearTimeout(timer); events.forEach((e) => target.removeEventListener(e, onChange)); };
    events.forEach((e) => target.addEventListener(e, onChange));
    onChange();
  });
}

async function httpError(resp) {
  try {
    const body = await resp.json();
    if (body && body.detail) return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  return `HTTP ${resp.status}`;
}

class RefusedByServer extends Error {}

async function startWebRtc(tenant) {
  pc = new RTCPeerConnection({ iceServers: [] });
  mic.getAudioTracks().forEach((track) => pc.addTrack(track, mic));
  channel = pc.createDataChannel("control");
  channel.onmessage = (e) => onServerMessage(JSON.parse(e.data));
  pc.ontrack = (e) => {
    const audio = $("agent-audio");
    audio.srcObject = e.streams[0] || new MediaStream([e.track]);
    audio.play().catch((err) => console.warn("agent audio autoplay:", err));
  };
  await pc.setLocalDescription(await pc.createOffer());
  await waitFor(() => pc.iceGatheringState === "complete", ["icegatheringstatechange"], pc,
    ICE_GATHER_TIMEOUT_MS, "ICE gathering").catch(() => { /* send what we have */ });
  const resp = await fetch("/webrtc/offer", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: "offer", tenant }),
  });
  if (resp.status >= 400 && resp.status < 500) throw new RefusedByServer(await httpError(resp));
  if (!resp.ok) throw new Error(`the server could not answer the WebRTC offer: ${await httpError(resp)}`);
  await pc.setRemoteDescription(await resp.json());
  await waitFor(() => {
    if (pc.connectionState === "failed") throw new Error("WebRTC connection failed (ICE/DTLS)");
    return pc.connectionState === "connected";
  }, ["connectionstatechange"], pc, CONNECT_TIMEOUT_MS, "WebRTC connection");
  pc.addEventListener("connectionstatechange", () => {
    if (!pc || call.state === "ended") return;
    if (pc.connectionState === "disconnected") setStatus("The connection is unstable; trying to recover...");
    if (pc.connectionState === "failed" || pc.connectionState === "closed") {
      // The outcome cannot arrive over a dead data channel: do not leave the page waiting for it.
      showError("The WebRTC connection to the server was lost; the call has ended. Press Call to try again.");
      finish();
    }
  });
}

function stopWebRtc() {
  if (channel) { try { channel.close(); } catch (_) { /* closed */ } }
  if (pc) { try { pc.close(); } catch (_) { /* closed */ } }
  channel = null;
  pc = null;
}

// ---- the call -------------------------------------------------------------------------------
async function getMicrophone() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error("This page cannot use the microphone: browsers allow it only on https:// pages or on localhost / 127.0.0.1.");
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true }, video: false });
  } catch (err) {
    if (err.name === "NotAllowedError" || err.name === "SecurityError") {
      throw new Error("Microphone access was refused. Allow the microphone for this page (the icon in the address bar) and press Call again.");
    }
    if (err.name === "NotFoundError" || err.name === "OverconstrainedError") {
      throw new Error("No microphone was found. Plug one in (or pick one in the system settings) and press Call again.");
    }
    throw new Error(`The microphone could not be opened: ${err.message || err.name}`);
  }
}

function useTransport(name) { call.transport = name; $("transport").textContent = name === "ws" ? "WebSocket PCM 16 kHz" : "WebRTC (Opus 48 kHz)"; }

async function startCall() {
  clearError();
  $("transcript").replaceChildren();
  agentLines.clear();
  $("outcome").hidden = true;
  $("booking").hidden = true;
  call.events = [];
  call.outcome = null;
  call.startedAt = performance.now();
  setState("connecting");
  setStatus("Opening the microphone...");
  const tenant = $("tenant").value || params.get("tenant") || null;
  try {
    mic = await getMicrophone();
  } catch (err) {
    showError(err.message);
    setState("failed");
    setStatus("Not connected.");
    return;
  }
  setStatus("Connecting...");
  if (params.get("transport") !== "ws") {
    try {
      useTransport("webrtc");
      await startWebRtc(tenant);
      setStatus("Connected over WebRTC: say hello.");
      return;
    } catch (err) {
      stopWebRtc();
      if (err instanceof RefusedByServer) { fail(`The server refused the call: ${err.message}`); return; }
      call.fallbackReason = err.message;
      console.warn("WebRTC failed, falling back to WebSocket PCM:", err);
    }
  }
  try {
    useTransport("ws");
    await startWebSocket(tenant);
    setStatus("Connected over WebSocket: say hello.");
  } catch (err) {
    stopWebSocket();
    fail(`Cannot reach the SpotFunnel server at ${location.host} (${err.message}). Is \`spotfunnel serve\` still running?`);
  }
}

function fail(message) {
  showError(message);
  finish();
  setState("failed");
  setStatus("Not connected.");
}

function hangUp() {
  if (call.state === "ended" || call.state === "idle") return;
  setState("ending");
  setStatus("Hanging up...");
  if (!sendControl({ type: "hangup" })) finish();
  // The server answers with the outcome; if it cannot, do not leave the page hanging.
  setTimeout(() => { if (call.state === "ending") finish(); }, 8000);
}

function finish() {
  stopWebRtc();
  stopWebSocket();
  if (mic) mic.getTracks().forEach((t) => t.stop());
  mic = null;
  setState("ended");
}

async function loadTenants() {
  try {
    const resp = await fetch("/talk/tenants");
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const body = await resp.json();
    const select = $("tenant");
    body.tenants.forEach((t) => { const o = document.createElement("option"); o.value = t; o.textContent = t; select.appendChild(o); });
    if (params.get("tenant")) select.value = params.get("tenant");
    if (!body.ready) setStatus("The server is still loading its models; the call may take a moment to answer.");
  } catch (err) {
    showError(`Cannot reach the SpotFunnel server at ${location.host} (${err.message}). Start it with \`./run serve\` and reload this page.`);
  }
}

$("call").addEventListener("click", startCall);
$("hangup").addEventListener("click", hangUp);
$("keypad").addEventListener("click", (e) => { if (e.target.tagName === "BUTTON") pressKey(e.target.textContent.trim()); });
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT") return;
  if (/^[0-9*#]$/.test(e.key)) pressKey(e.key);
});
setState("idle");
loadTenants();
