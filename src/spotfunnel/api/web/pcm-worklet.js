// SpotFunnel's capture worklet: microphone audio at the context's rate -> PCM16 16 kHz mono, 20 ms (640-byte) frames.
// Band-limited resampling (windowed sinc, cut-off just under 8 kHz) so that downsampling from 44.1/48 kHz does not alias.
const OUT_RATE = 16000;
const FRAME_SAMPLES = 320; // 20 ms at 16 kHz

class Pcm16kCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE;                    // input samples per output sample
    this.cutoff = Math.min(1, OUT_RATE / sampleRate) * 0.92; // relative to the input Nyquist
    this.half = Math.ceil(8 / this.cutoff);                // filter half-width in input samples
    this.buf = new Float32Array(this.half);                // leading zeros: history for the first outputs
    this.t = this.half;                                    // position of the next output sample in buf
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
  }

  kernel(d) {
    const x = this.cutoff * d;
    const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
    const w = d / this.half; // Blackman window over [-half, half]
    const win = 0.42 + 0.5 * Math.cos(Math.PI * w) + 0.08 * Math.cos(2 * Math.PI * w);
    return this.cutoff * sinc * win;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (!input) return true;
    const grown = new Float32Array(this.buf.length + input.length);
    grown.set(this.buf);
    grown.set(input, this.buf.length);
    this.buf = grown;
    while (this.t + this.half < this.buf.length) {
      const lo = Math.ceil(this.t - this.half);
      const hi = Math.floor(this.t + this.half);
      let acc = 0;
      for (let i = lo; i <= hi; i++) acc += this.buf[i] * this.kernel(this.t - i);
      const s = Math.max(-1, Math.min(1, acc));
      this.frame[this.filled++] = s < 0 ? s * 32768 : s * 32767;
      if (this.filled === FRAME_SAMPLES) {
        const out = this.frame.buffer;
        this.port.postMessage(out, [out]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
      this.t += this.step;
    }
    const drop = Math.floor(this.t) - this.half;
    if (drop > 0) {
      this.buf = this.buf.slice(drop);
      this.t -= drop;
    }
    return true;
  }
}

registerProcessor("pcm16k-capture", Pcm16kCapture);
