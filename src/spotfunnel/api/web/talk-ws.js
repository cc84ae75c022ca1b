// SpotFunnel's talk page, the WebSocket PCM fallback: an AudioWorklet sends 16 kHz PCM16 frames, agent frames play back in order.
// Loaded before talk.js, which owns the call (`call`, `mic`, `onServerMessage`, `showError`, `finish`).
"use strict";

let ws = null;       // WebSocket
let audioCtx = null; // WS path: capture worklet and playback
let playback = null;

class Playback {
  // Schedules the agent's 20 ms PCM16 16 kHz frames back to back; echoes marks once played.
  constructor(ctx, onMark) { this.ctx = ctx; this.onMark = onMark; this.next = 0; this.sources = new Set(); this.marks = []; }

  play(buffer) {
    const pcm = new Int16Array(buffer);
    const audio = this.ctx.createBuffer(1, pcm.length, 16000);
    const data = audio.getChannelData(0);
    let loud = false;
    for (let i = 0; i < pcm.length; i++) { data[i] = pcm[i] / 32768; if (Math.abs(pcm[i]) > 300) loud = true; }
    call.stats.agentFrames++;
    if (loud) call.stats.agentLoudFrames++;
    const src = this.ctx.createBufferSource();
    src.buffer = audio;
    src.connect(this.ctx.destination);
    const now = this.ctx.currentTime;
    const at = Math.max(this.next, now + 0.06); // 60 ms of jitter room
    src.start(at);
    this.next = at + pcm.length / 16000;
    this.sources.add(src);
    src.onended = () => this.sources.delete(src);
  }

  mark(name) {
    const delay = Math.max(0, this.next - this.ctx.currentTime);
    const timer = setTimeout(() => { this.marks = this.marks.filter((m) => m.timer !== timer); this.onMark(name); }, delay * 1000);
    this.marks.push({ name, timer });
  }

  clear() {
    this.sources.forEach((src) => { try { src.stop(); } catch (_) { /* not started */ } });
    this.sources.clear();
    this.next = 0;
    const pending = this.marks;
    this.marks = [];
    pending.forEach((m) => { clearTimeout(m.timer); this.onMark(m.name); });
  }
}

function openSocket(tenant) {
  return new Promise((resolve, reject) => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    // the server checks the tenant against its own; a browser call has no caller ID (the agent asks for the number)
    const query = tenant ? `?tenant=${encodeURIComponent(tenant)}` : "";
    const socket = new WebSocket(`${scheme}://${location.host}/browser/ws${query}`);
    socket.binaryType = "arraybuffer";
    const timer = setTimeout(() => { socket.close(); reject(new Error("the WebSocket did not open within 8 s")); }, CONNECT_TIMEOUT_MS);
    socket.onopen = () => { clearTimeout(timer); resolve(socket); };
    socket.onerror = () => { clearTimeout(timer); reject(new Error("the WebSocket could not connect")); };
  });
}

async function startWebSocket(tenant) {
  ws = await openSocket(tenant);
  audioCtx = new AudioContext();
  playback = new Playback(audioCtx, (name) => ws && ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ type: "mark", name })));
  ws.onmessage = (e) => {
    if (typeof e.data !== "string") { playback.play(e.data); return; }
    const msg = JSON.parse(e.data);
    if (msg.type === "mark") playback.mark(msg.name);
    else if (msg.type === "clear") playback.clear();
    else onServerMessage(msg);
  };
  ws.onclose = () => {
    if (call.state !== "ended") { showError("The connection to the SpotFunnel server closed before the call ended."); finish(); }
  };
  ws.send(JSON.stringify({ type: "start", format: { encoding: "audio/l16", sampleRate: 16000, channels: 1 } }));
  await audioCtx.audioWorklet.addModule("/talk/static/pcm-worklet.js");
  const source = audioCtx.createMediaStreamSource(mic);
  const capture = new AudioWorkletNode(audioCtx, "pcm16k-capture");
  capture.port.onmessage = (e) => {
    if (ws && ws.readyState === WebSocket.OPEN) { ws.send(e.data); call.stats.framesSent++; }
  };
  const mute = audioCtx.createGain(); // keeps the worklet pulled by the graph without playing the mic back
  mute.gain.value = 0;
  source.connect(capture).connect(mute).connect(audioCtx.destination);
  if (audioCtx.state === "suspended") await audioCtx.resume();
}

function stopWebSocket() {
  if (ws) { ws.onclose = null; try { ws.close(); } catch (_) { /* closed */ } }
  if (audioCtx) audioCtx.close().catch(() => {});
  ws = null;
  audioCtx = null;
  playback = null;
}
