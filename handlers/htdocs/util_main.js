// Page side of the benchmark pages (benchmark.html, performance_test_iframe.html): builds
// the WebSocket URL and runs benchmark.js either in the page or on a dedicated worker
// (`new Worker('benchmark.js')`, resolved against the page, so the pages work from any
// directory). No form handling here: each page reads its own inputs.
'use strict';

/** ws(s)://<this page's host>/benchmark_helper (ws://localhost:9998/… for a file: page). */
function defaultBenchmarkUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host || 'localhost:9998'}/benchmark_helper`;
}

/** The worker running benchmark.js, created on first use and kept for later runs. */
let benchmarkWorker = null;
/** The reporter of the run on the worker, if one is in progress. */
let workerRunReporter = null;

function getBenchmarkWorker() {
  if (benchmarkWorker) return benchmarkWorker;
  benchmarkWorker = new Worker('benchmark.js');
  benchmarkWorker.onmessage = (event) => {
    const { type, text, record, result } = event.data;
    const reporter = workerRunReporter;
    if (!reporter) return;
    if (type === 'log') reporter.log(text);
    else if (type === 'summary') reporter.summary(text);
    else if (type === 'measure') reporter.measure(record);
    else if (type === 'finished') {
      workerRunReporter = null;
      reporter.finished(result);
    }
  };
  benchmarkWorker.onerror = (event) => {
    event.preventDefault();
    const reporter = workerRunReporter;
    workerRunReporter = null;
    benchmarkWorker.terminate();
    benchmarkWorker = null;
    const message = `worker failed: ${event.message || 'cannot load benchmark.js'}`;
    if (reporter) {
      reporter.log(`Error: ${message}`);
      reporter.finished({ ok: false, error: message });
    }
  };
  return benchmarkWorker;
}

/**
 * Runs `action` ('send', 'receive' or 'batch') with `config`, in the page or on the worker,
 * reporting to `reporter` ({log, summary, measure, finished}).
 */
function runBenchmark(action, config, onWorker, reporter) {
  if (!onWorker) {
    startBenchmark(action, config, reporter);
    return;
  }
  if (workerRunReporter) {
    reporter.log('Error: a benchmark is already running on the worker (press Stop first)');
    reporter.finished({ ok: false, error: 'already running' });
    return;
  }
  workerRunReporter = reporter;
  getBenchmarkWorker().postMessage({ type: 'start', action, config });
}

/** Stops the run in progress, wherever it runs. */
function stopRunningBenchmark(log) {
  let stopped = stopBenchmark();
  if (workerRunReporter && benchmarkWorker) {
    benchmarkWorker.postMessage({ type: 'stop' });
    stopped = true;
  }
  if (!stopped) log('Nothing to stop');
}
