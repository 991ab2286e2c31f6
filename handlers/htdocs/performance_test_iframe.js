// Driver of performance_test_iframe.html: runs benchmark.js against /benchmark_helper when the
// parent page asks, and reports back with parent.postMessage.
//
// The parent sends:
//   {command: 'start', benchmarkName, dataType, async, verifyData, numIterations,
//    numWarmUpIterations, isWorker}
//     benchmarkName  'send', 'receive' or 'batch' (send, then receive)
//     dataType       'arraybuffer' or 'blob' (how payloads are sent and received)
//     async          true: a step's messages are pipelined; false: one at a time
//     verifyData     check every payload byte (both directions)
//     isWorker       run benchmark.js on a dedicated worker instead of this page
//   Optional: startSize, stopThreshold, minTotal (default: one 10 MiB message per step),
//   multipliers (default [2]), numSockets (default 1), url (default this host's
//   /benchmark_helper).
//   {command: 'stop'} stops the run in progress.
//
// This page answers (to the parent, which may be this window itself when opened directly):
//   {command: 'log', message}              every log line
//   {command: 'summary', message}          every summary line
//   {command: 'measureValue', value, record}  each measured step; value = ms per message
//   {command: 'finished', ok, stopped, error}  once per run
'use strict';

/** Ten mebibytes: the message size of the automated runs (below the 16 MiB that config/server.toml allows; wshd's built-in default is 1 MiB). */
const PERFORMANCE_TEST_SIZE = 10 * 1024 * 1024;

/** benchmarkName -> action of benchmark.js (the long names are accepted too). */
const BENCHMARK_ACTIONS = {
  send: 'send',
  sendBenchmark: 'send',
  receive: 'receive',
  receiveBenchmark: 'receive',
  batch: 'batch',
  batchBenchmark: 'batch',
};

function report(message) {
  parent.postMessage(message, '*');
}

function addToLog(text) {
  const log = document.getElementById('log');
  if (log) log.value += `${text}\n`;
}

const iframeReporter = {
  log: (text) => {
    addToLog(text);
    report({ command: 'log', message: text });
  },
  summary: (text) => {
    addToLog(text);
    report({ command: 'summary', message: text });
  },
  measure: (record) => report({ command: 'measureValue', value: record.timePerMessage, record }),
  finished: (result) => report({ command: 'finished', ...result }),
};

/** The benchmark.js config for a 'start' message. */
function configFromMessage(message) {
  const startSize = message.startSize ?? PERFORMANCE_TEST_SIZE;
  return {
    url: message.url || defaultBenchmarkUrl(),
    numSockets: message.numSockets ?? 1,
    numIterations: message.numIterations ?? 1,
    numWarmUpIterations: message.numWarmUpIterations ?? 0,
    startSize,
    stopThreshold: message.stopThreshold ?? startSize,
    minTotal: message.minTotal ?? startSize,
    multipliers: message.multipliers ?? [2],
    verifyData: Boolean(message.verifyData),
    dataType: message.dataType === 'blob' ? 'blob' : 'arraybuffer',
    async: message.async !== false,
  };
}

function fail(error) {
  iframeReporter.log(`Error: ${error}`);
  iframeReporter.finished({ ok: false, error });
}

addEventListener('message', (event) => {
  const message = event.data;
  if (!message || typeof message !== 'object' || typeof message.command !== 'string') return;
  if (message.command === 'stop') {
    stopRunningBenchmark(iframeReporter.log);
  } else if (message.command === 'start') {
    const action = BENCHMARK_ACTIONS[message.benchmarkName];
    if (!action) {
      fail(`unknown benchmarkName "${message.benchmarkName}"`);
      return;
    }
    let config;
    try {
      config = configFromMessage(message);
      benchmarkSizes(config);
    } catch (error) {
      fail(error.message);
      return;
    }
    runBenchmark(action, config, Boolean(message.isWorker), iframeReporter);
  }
});
