// The WebSocket throughput benchmark, run against wshd's /benchmark_helper handler.
//
// The same file runs in two places:
//   * in a page (benchmark.html, performance_test_iframe.html), after util.js and
//     util_main.js;
//   * as a dedicated worker (`new Worker('benchmark.js')`): it then loads util.js and
//     util_worker.js itself, and takes its orders by postMessage.
//
// Protocol with /benchmark_helper (text commands, binary payloads of 'a' bytes):
//   send benchmark:    "send 1" (verify) or "send 0", then the payload  -> text ack "<size>"
//   receive benchmark: "receive <size>"                                 -> binary payload
//
// Parameters (`config`): url, numSockets, numIterations, numWarmUpIterations, startSize,
// stopThreshold, minTotal, multipliers, verifyData, dataType ('arraybuffer' or 'blob') and
// async (true: all of a step's messages are sent at once, pipelined; false: one at a time per
// socket, waiting for each answer). For each iteration, each message size (see
// benchmarkSizes in util.js) is one "step": at least `minTotal` bytes in messages of that size,
// spread over the sockets. Warm-up iterations are logged but left out of the summary.
//
// Results go to a `reporter`: log(text), summary(text), measure(record) and
// finished({ok, stopped, error}).
'use strict';

if (typeof document === 'undefined' && typeof importScripts === 'function') {
  importScripts('util.js', 'util_worker.js');
}

/** The run in progress, if any (one at a time). */
let currentRun = null;

/**
 * One WebSocket with a queue of received messages: `next()` resolves with the next message,
 * or rejects once the connection has failed or closed.
 */
class Channel {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiting = [];
    this.failure = null;
    ws.onmessage = (event) => {
      const waiter = this.waiting.shift();
      if (waiter) waiter.resolve(event.data);
      else this.messages.push(event.data);
    };
    ws.onerror = () => this.fail(new Error(`WebSocket error on ${ws.url}`));
    ws.onclose = (event) =>
      this.fail(new Error(`the connection closed (wasClean = ${event.wasClean}, code = ${event.code}, reason = ${event.reason})`));
  }

  fail(error) {
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.waiting.splice(0)) waiter.reject(error);
  }

  next() {
    if (this.messages.length) return Promise.resolve(this.messages.shift());
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  send(data) {
    if (this.failure) throw this.failure;
    this.ws.send(data);
  }

  close() {
    if (this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, 'benchmark done');
  }
}

/** Opens `config.numSockets` connections; rejects if any fails to open. */
async function openChannels(config) {
  const opening = [];
  for (let i = 0; i < config.numSockets; i++) {
    const ws = new WebSocket(config.url);
    ws.binaryType = config.dataType === 'blob' ? 'blob' : 'arraybuffer';
    opening.push(
      new Promise((resolve, reject) => {
        ws.onopen = () => resolve(new Channel(ws));
        ws.onerror = () => reject(new Error(`cannot connect to ${config.url}`));
        ws.onclose = (event) => reject(new Error(`cannot connect to ${config.url} (code = ${event.code})`));
      }),
    );
  }
  const results = await Promise.allSettled(opening);
  const channels = results.filter((r) => r.status === 'fulfilled').map((r) => r.value);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    channels.forEach((c) => c.close());
    throw failed.reason;
  }
  return channels;
}

/** How many of `count` messages socket `index` of `sockets` carries. */
function share(count, index, sockets) {
  return Math.floor(count / sockets) + (index < count % sockets ? 1 : 0);
}

/** Checks an ack of the send benchmark: the text of the payload's size. */
function checkAck(ack, size) {
  if (typeof ack !== 'string') throw new Error(`expected a text ack, got a ${Object.prototype.toString.call(ack)}`);
  if (ack !== String(size)) throw new Error(`expected the ack "${size}", got "${ack.slice(0, 100)}"`);
}

/** Checks a payload of the receive benchmark: `size` bytes, all 'a' when verifying. */
async function checkPayload(data, size, verify) {
  let buffer = data;
  if (typeof Blob !== 'undefined' && data instanceof Blob) {
    if (data.size !== size) throw new Error(`expected a Blob of ${size} bytes, got ${data.size}`);
    if (!verify) return;
    buffer = await data.arrayBuffer();
  } else if (!(data instanceof ArrayBuffer)) {
    throw new Error(`expected binary data, got ${typeof data === 'string' ? `the text "${data.slice(0, 100)}"` : typeof data}`);
  }
  if (buffer.byteLength !== size) throw new Error(`expected ${size} bytes, got ${buffer.byteLength}`);
  if (verify && !verifyArrayBuffer(buffer, BENCHMARK_FILL)) throw new Error(`payload of ${size} bytes is not all 'a'`);
}

/** One socket's part of a send step: `count` payloads, each acknowledged with its size. */
async function sendOn(channel, count, payload, size, config) {
  const command = config.verifyData ? 'send 1' : 'send 0';
  if (config.async === false) {
    for (let i = 0; i < count; i++) {
      channel.send(command);
      channel.send(payload);
      checkAck(await channel.next(), size);
    }
    return;
  }
  for (let i = 0; i < count; i++) {
    channel.send(command);
    channel.send(payload);
  }
  for (let i = 0; i < count; i++) checkAck(await channel.next(), size);
}

/** One socket's part of a receive step: asks for `count` payloads of `size` bytes. */
async function receiveOn(channel, count, size, config) {
  if (config.async === false) {
    for (let i = 0; i < count; i++) {
      channel.send(`receive ${size}`);
      await checkPayload(await channel.next(), size, config.verifyData);
    }
    return;
  }
  for (let i = 0; i < count; i++) channel.send(`receive ${size}`);
  for (let i = 0; i < count; i++) await checkPayload(await channel.next(), size, config.verifyData);
}

/** Runs one step (one message size) of `kind` ('send' or 'receive'); returns its record. */
async function runStep(run, kind, size, isWarmUp) {
  const { config, channels } = run;
  const count = messageCount(config, size);
  let payload = null;
  if (kind === 'send') {
    const buffer = makeBenchmarkPayload(size);
    payload = config.dataType === 'blob' ? new Blob([buffer]) : buffer;
  }
  const start = now();
  await Promise.all(
    channels.map((channel, i) => {
      const n = share(count, i, channels.length);
      return kind === 'send' ? sendOn(channel, n, payload, size, config) : receiveOn(channel, n, size, config);
    }),
  );
  const milliseconds = now() - start;
  return {
    kind,
    size,
    count,
    isWarmUp,
    milliseconds,
    timePerMessage: milliseconds / count,
    speed: speedInKBps(size * count, milliseconds),
  };
}

/** Logs one step and, unless it is a warm-up, keeps it for the summary. */
function recordStep(run, record) {
  const line =
    `${record.isWarmUp ? '(warm-up) ' : ''}${record.size} B x ${record.count}: ` +
    `${record.milliseconds.toFixed(1)} ms, ${record.timePerMessage.toFixed(3)} ms/message, ` +
    `${record.speed.toFixed(1)} KB/s`;
  run.reporter.log(line);
  if (record.isWarmUp) return;
  run.reporter.measure(record);
  const perSize = run.results.get(record.size) || [];
  perSize.push(record);
  run.results.set(record.size, perSize);
}

/** Writes the summary table of one benchmark (`kind`) to the reporter. */
function reportSummary(run, kind) {
  const { reporter } = run;
  reporter.summary(`${kind === 'send' ? 'Send' : 'Receive'} benchmark: ${describeConfig(run.config)}`);
  reporter.summary('Size[B]\tAverage time/message[ms]\tStddev[ms]\tSpeed[KB/s]');
  for (const [size, records] of run.results) {
    const { mean, stddev } = meanAndStddev(records.map((r) => r.timePerMessage));
    const bytes = records.reduce((a, r) => a + r.size * r.count, 0);
    const ms = records.reduce((a, r) => a + r.milliseconds, 0);
    reporter.summary(
      `${size}\t${mean.toFixed(3)}\t${Number.isNaN(stddev) ? '-' : stddev.toFixed(3)}\t${speedInKBps(bytes, ms).toFixed(1)}`,
    );
  }
}

/** Runs the benchmarks `kinds` (['send'], ['receive'] or both) one after the other. */
async function runKinds(run, kinds) {
  const sizes = benchmarkSizes(run.config);
  run.channels = await openChannels(run.config);
  if (run.stopped) throw new Error('stopped');
  for (const kind of kinds) {
    run.reporter.log(`${kind === 'send' ? 'Send' : 'Receive'} benchmark (${run.place}): ${describeConfig(run.config)}`);
    run.results = new Map();
    const iterations = run.config.numWarmUpIterations + run.config.numIterations;
    for (let i = 0; i < iterations; i++) {
      for (const size of sizes) {
        if (run.stopped) throw new Error('stopped');
        recordStep(run, await runStep(run, kind, size, i < run.config.numWarmUpIterations));
      }
    }
    reportSummary(run, kind);
  }
}

/** The kinds of benchmark an action runs. */
const ACTIONS = { send: ['send'], receive: ['receive'], batch: ['send', 'receive'] };

/**
 * Starts `action` ('send', 'receive' or 'batch') with `config`, reporting to `reporter`.
 * Refuses (with an error on the reporter) while another run is in progress.
 */
async function startBenchmark(action, config, reporter) {
  const kinds = ACTIONS[action];
  if (!kinds) {
    reporter.log(`Error: unknown action "${action}"`);
    reporter.finished({ ok: false, error: `unknown action "${action}"` });
    return;
  }
  if (currentRun) {
    reporter.log('Error: a benchmark is already running (press Stop first)');
    reporter.finished({ ok: false, error: 'already running' });
    return;
  }
  const place = typeof document === 'undefined' ? 'on a worker' : 'in the page';
  const run = { config, reporter, place, channels: [], results: new Map(), stopped: false };
  currentRun = run;
  try {
    await runKinds(run, kinds);
    reporter.log('Finished');
    reporter.finished({ ok: true });
  } catch (error) {
    if (run.stopped) {
      reporter.log('Stopped');
      reporter.finished({ ok: false, stopped: true });
    } else {
      reporter.log(`Error: ${error.message}`);
      reporter.finished({ ok: false, error: error.message });
    }
  } finally {
    run.channels.forEach((c) => c.close());
    if (currentRun === run) currentRun = null;
  }
}

/** Stops the run in progress: its sockets are closed and it ends with "Stopped". */
function stopBenchmark() {
  if (!currentRun) return false;
  currentRun.stopped = true;
  currentRun.channels.forEach((c) => c.close());
  return true;
}
