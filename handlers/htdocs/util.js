// Helpers shared by the benchmark pages, usable both in a page and in a dedicated worker
// (no DOM access here). Loaded by benchmark.html, performance_test_iframe.html and
// arraybuffer_benchmark.html with <script src>, and by benchmark.js on a worker with
// importScripts().
'use strict';

/** The byte every benchmark payload is made of: 'a', what /benchmark_helper sends and checks. */
const BENCHMARK_FILL = 0x61;

/** Fills `buffer` (an ArrayBuffer) with the byte `value`, four bytes at a time. */
function fillArrayBuffer(buffer, value) {
  const words = Math.floor(buffer.byteLength / 4);
  new Uint32Array(buffer, 0, words).fill(value * 0x01010101);
  new Uint8Array(buffer, words * 4).fill(value);
}

/** Whether every byte of `buffer` (an ArrayBuffer) is `value`. */
function verifyArrayBuffer(buffer, value) {
  const words = Math.floor(buffer.byteLength / 4);
  const word = (value * 0x01010101) >>> 0;
  const u32 = new Uint32Array(buffer, 0, words);
  for (let i = 0; i < words; i++) {
    if (u32[i] !== word) return false;
  }
  const tail = new Uint8Array(buffer, words * 4);
  for (let i = 0; i < tail.length; i++) {
    if (tail[i] !== value) return false;
  }
  return true;
}

/** A new ArrayBuffer of `size` bytes of 'a'. */
function makeBenchmarkPayload(size) {
  const buffer = new ArrayBuffer(size);
  fillArrayBuffer(buffer, BENCHMARK_FILL);
  return buffer;
}

/** Milliseconds with sub-millisecond precision where available. */
function now() {
  return typeof performance !== 'undefined' ? performance.now() : Date.now();
}

/**
 * The message sizes of one pass: `startSize`, then multiplied by each of `multipliers` in
 * turn, while it stays at or below `stopThreshold`. E.g. 10240 with [5, 2] gives 10240, 51200,
 * 102400, 512000, … Throws on parameters that would loop forever.
 */
function benchmarkSizes(config) {
  if (!(config.startSize >= 1)) throw new Error(`start size must be at least 1 (got ${config.startSize})`);
  if (!config.multipliers.length || config.multipliers.some((m) => !(m > 1))) {
    throw new Error(`every multiplier must be greater than 1 (got ${config.multipliers.join(', ')})`);
  }
  const sizes = [];
  for (let size = config.startSize, i = 0; size <= config.stopThreshold; i++) {
    sizes.push(size);
    size = Math.round(size * config.multipliers[i % config.multipliers.length]);
  }
  if (!sizes.length) {
    throw new Error(`no message size: start size ${config.startSize} is above the stop threshold ${config.stopThreshold}`);
  }
  return sizes;
}

/** How many messages of `size` bytes make at least `minTotal` bytes (at least one). */
function messageCount(config, size) {
  return Math.max(1, Math.ceil(config.minTotal / size));
}

/** Parses "5, 2" into [5, 2]; throws on anything that is not a list of numbers. */
function parseMultipliers(text) {
  const values = String(text).split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (!values.length || values.some((v) => !Number.isFinite(v))) {
    throw new Error(`multipliers must be comma-separated numbers (got "${text}")`);
  }
  return values;
}

/** Mean and sample standard deviation (NaN with fewer than two values) of `values`. */
function meanAndStddev(values) {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, stddev: NaN };
  const variance = values.reduce((a, v) => a + (v - mean) * (v - mean), 0) / (n - 1);
  return { mean, stddev: Math.sqrt(variance) };
}

/** Throughput in kilobytes (1000 bytes) per second: bytes per millisecond. */
function speedInKBps(bytes, milliseconds) {
  return milliseconds > 0 ? bytes / milliseconds : Infinity;
}

/** A one-line description of the parameters, for the log and the summary. */
function describeConfig(config) {
  return (
    `sockets=${config.numSockets} iterations=${config.numIterations} warm-up=${config.numWarmUpIterations} ` +
    `sizes=${config.startSize}..${config.stopThreshold} (x ${config.multipliers.join(', ')}) ` +
    `min-total=${config.minTotal} verify=${config.verifyData} data-type=${config.dataType || 'arraybuffer'}`
  );
}
