// Worker side of the benchmark pages: loaded by benchmark.js when it runs as a dedicated
// worker (`new Worker('benchmark.js')`). The page posts {type: 'start', action, config} or
// {type: 'stop'}; the worker answers with {type: 'log' | 'summary', text},
// {type: 'measure', record} and, at the end of each run, {type: 'finished', result}.
'use strict';

/** A reporter (see benchmark.js) that forwards everything to the page. */
const workerReporter = {
  log: (text) => postMessage({ type: 'log', text }),
  summary: (text) => postMessage({ type: 'summary', text }),
  measure: (record) => postMessage({ type: 'measure', record }),
  finished: (result) => postMessage({ type: 'finished', result }),
};

onmessage = (event) => {
  const message = event.data || {};
  if (message.type === 'start') {
    startBenchmark(message.action, message.config, workerReporter);
  } else if (message.type === 'stop') {
    if (!stopBenchmark()) workerReporter.log('Nothing to stop');
  } else {
    workerReporter.log(`Error: unknown message type "${message.type}"`);
  }
};
