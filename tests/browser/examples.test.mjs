// End-to-end tests of the example pages (handlers/htdocs/console.html, benchmark.html and
// friends) in headless Chromium, against `target/debug/wshd` started with no flags from the
// repository root, like tutorial.test.mjs. Run from the repository root:
//
//     cargo build --workspace && node --test tests/browser/
//
// Port 9998: every test file here starts its own wshd on the fixed port of the development
// config, so the files must run one at a time: `node --test --test-concurrency=1` (as
// .ci/run does). Before starting its server this file still waits (bounded) for the port to
// be released by the previous file's server.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import path from 'node:path';

import { PORT, launchBrowser, startServer, waitForFreePort, waitUntil } from './harness.mjs';

const BASE = `http://localhost:${PORT}`;
describe('example pages against wshd with no flags', { timeout: 420_000 }, () => {
  let server;
  let browser;

  before(async () => {
    await waitForFreePort();
    server = await startServer();
    browser = await launchBrowser();
  }, { timeout: 360_000 });

  after(async () => {
    await Promise.allSettled([browser?.close(), server?.stop()]);
  }, { timeout: 20_000 });

  /**
   * Opens `pagePath` in a new page and runs `body(page, helpers)`. Uncaught page errors fail
   * the test; on failure the log areas, the page console and the wshd output are printed.
   */
  async function withPage(t, pagePath, title, body) {
    const page = await browser.context.newPage();
    const consoleLines = [];
    const pageErrors = [];
    page.on('console', (msg) => consoleLines.push(`[console.${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => {
      pageErrors.push(err.message);
      consoleLines.push(`[pageerror] ${err.message}`);
    });
    const value = (selector) => page.locator(selector).inputValue({ timeout: 1_000 });
    /** Waits until the textarea `selector` contains `needle` (a string or a RegExp). */
    const waitForText = (needle, { selector = '#log', timeoutMs = 15_000 } = {}) =>
      waitUntil(
        async () => {
          const text = await value(selector);
          return typeof needle === 'string' ? text.includes(needle) : needle.test(text);
        },
        { timeoutMs, what: `${selector} to contain ${needle}` },
      );
    try {
      const response = await page.goto(`${BASE}/${pagePath}`);
      assert.equal(response?.status(), 200, `GET /${pagePath} status`);
      assert.equal(await page.title(), title);
      await body(page, { value, waitForText });
      assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
      const screenshot = path.join(browser.screenshotDir, `${pagePath.replace(/\W/g, '_')}.png`);
      await page.screenshot({ path: screenshot });
      t.diagnostic(`screenshot: ${screenshot}`);
    } catch (err) {
      for (const selector of ['#log', '#summary']) {
        if (await page.locator(selector).count().catch(() => 0)) {
          console.error(`--- ${pagePath} ${selector} ---\n${await value(selector).catch((e) => `<${e.message}>`)}`);
        }
      }
      console.error(`--- page console (${pagePath}) ---\n${consoleLines.join('\n')}`);
      console.error(`--- wshd output ---\n${server.log()}--- end of wshd output ---`);
      throw err;
    } finally {
      await page.close().catch(() => {});
    }
  }

  test('examples.html links to every example page', { timeout: 30_000 }, (t) =>
    withPage(t, 'examples.html', 'wshd examples', async (page) => {
      const hrefs = await page.locator('#pages a').evaluateAll((links) => links.map((a) => a.getAttribute('href')));
      assert.deepEqual(hrefs, [
        'index.html',
        'console.html',
        'benchmark.html',
        'arraybuffer_benchmark.html',
        'performance_test_iframe.html',
        'chat.html',
      ]);
      for (const href of hrefs) {
        const response = await page.request.get(`${BASE}/${href}`, { timeout: 5_000 });
        assert.equal(response.status(), 200, href);
      }
      // The scripts the pages load are served too.
      for (const script of ['util.js', 'util_main.js', 'util_worker.js', 'benchmark.js', 'performance_test_iframe.js']) {
        const response = await page.request.get(`${BASE}/${script}`, { timeout: 5_000 });
        assert.equal(response.status(), 200, script);
      }
    }),
  );

  test('console.html: echo of text, ArrayBuffer, Blob and file; close 4000 "done"', { timeout: 60_000 }, (t) =>
    withPage(t, 'console.html', 'WebSocket console', async (page, { value, waitForText }) => {
      assert.equal(await value('#url'), `ws://localhost:${PORT}/echo`);
      await page.click('#connect');
      await waitForText(/^Opened \(protocol = , extensions = [^)]*\)$/m);

      await page.fill('#message', 'Hello, wshd');
      await page.click('#send-text');
      await waitForText('> Hello, wshd\n< Hello, wshd\n');

      // binaryType arraybuffer: both kinds of sent binary come back as ArrayBuffers.
      await page.check('#binary-type-arraybuffer');
      await page.fill('#binary-size', '1000');
      await page.check('#binary-kind-arraybuffer');
      await page.click('#send-binary');
      await waitForText('> Sent an ArrayBuffer of 1000 bytes\n< Received an ArrayBuffer of 1000 bytes\n');
      await page.fill('#binary-size', '2048');
      await page.check('#binary-kind-blob');
      await page.click('#send-binary');
      await waitForText('> Sent a Blob of 2048 bytes\n< Received an ArrayBuffer of 2048 bytes\n');

      // binaryType blob: they come back as Blobs.
      await page.check('#binary-type-blob');
      await page.fill('#binary-size', '777');
      await page.check('#binary-kind-arraybuffer');
      await page.click('#send-binary');
      await waitForText('> Sent an ArrayBuffer of 777 bytes\n< Received a Blob of 777 bytes\n');
      await page.fill('#binary-size', '0');
      await page.check('#binary-kind-blob');
      await page.click('#send-binary');
      await waitForText('> Sent a Blob of 0 bytes\n< Received a Blob of 0 bytes\n');

      await page.setInputFiles('#file', { name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from('hello file') });
      await page.click('#send-file');
      await waitForText('> Sent the file hello.txt (10 bytes)\n< Received a Blob of 10 bytes\n');

      await page.click('#print-state');
      await waitForText(`url = ws://localhost:${PORT}/echo\nreadyState = 1 (OPEN)\nbufferedAmount = 0\n`);

      await page.fill('#close-code', '4000');
      await page.fill('#close-reason', 'done');
      await page.click('#close');
      await waitForText('Closed (wasClean = true, code = 4000, reason = done)');
      await page.click('#print-state');
      await waitForText('readyState = 3 (CLOSED)');

      const log = await value('#log');
      assert.doesNotMatch(log, /^Error$/m, log);
      // Timestamps are off by default; the option prefixes new lines.
      assert.doesNotMatch(log, /^\[\d\d:\d\d:\d\d\.\d{3}\] /m);
      await page.check('#show-timestamps');
      await page.click('#print-state');
      await waitForText(/^\[\d\d:\d\d:\d\d\.\d{3}\] readyState = 3 \(CLOSED\)$/m);
    }),
  );

  /** Sets the benchmark form for a small run: 1 KiB to 8 KiB messages, 16 KiB per size. */
  async function smallBenchmarkParameters(page, { onWorker }) {
    await page.fill('#start-size', '1024');
    await page.fill('#stop-threshold', '8192');
    await page.fill('#min-total', '16384');
    await page.fill('#multipliers', '2');
    await page.fill('#num-warmup-iterations', '1');
    await page.check('#verify-data');
    await page.setChecked('#run-on-worker', onWorker);
  }

  /** Runs one benchmark from the page's button and checks its log and summary. */
  async function runBenchmarkButton(page, { value, waitForText }, button, kind, place) {
    await page.click('#clear-log');
    await page.click(button);
    await waitForText(/^(Finished|Stopped|Error: .*)$/m, { timeoutMs: 30_000 });
    const log = await value('#log');
    assert.doesNotMatch(log, /^Error/m, log);
    assert.match(log, new RegExp(`^${kind} benchmark \\(${place}\\): sockets=1 iterations=1 warm-up=1 `, 'm'));
    assert.match(log, /^Finished$/m);
    // One warm-up and one measured step per size.
    for (const size of [1024, 2048, 4096, 8192]) {
      assert.match(log, new RegExp(`^\\(warm-up\\) ${size} B x ${16384 / size}: `, 'm'), `warm-up ${size}`);
      assert.match(log, new RegExp(`^${size} B x ${16384 / size}: [\\d.]+ ms, `, 'm'), `step ${size}`);
    }
    const summary = await value('#summary');
    assert.match(summary, new RegExp(`^${kind} benchmark: `, 'm'));
    assert.match(summary, /^8192\t[\d.]+\t-\t[\d.]+$/m);
    assert.equal(await page.locator('#status').textContent(), 'Finished');
  }

  test('benchmark.html: small send and receive runs in the page', { timeout: 60_000 }, (t) =>
    withPage(t, 'benchmark.html', 'WebSocket benchmark', async (page, helpers) => {
      assert.equal(await helpers.value('#url'), `ws://localhost:${PORT}/benchmark_helper`);
      // The documented defaults.
      const defaults = {
        '#num-sockets': '1',
        '#num-iterations': '1',
        '#num-warmup-iterations': '0',
        '#start-size': '10240',
        '#stop-threshold': '102400000',
        '#min-total': '102400000',
        '#multipliers': '5, 2',
      };
      for (const [selector, expected] of Object.entries(defaults)) {
        assert.equal(await helpers.value(selector), expected, selector);
      }
      assert.equal(await page.isChecked('#verify-data'), true);
      assert.equal(await page.isChecked('#run-on-worker'), false);

      await smallBenchmarkParameters(page, { onWorker: false });
      await runBenchmarkButton(page, helpers, '#send-benchmark', 'Send', 'in the page');
      await runBenchmarkButton(page, helpers, '#receive-benchmark', 'Receive', 'in the page');
    }),
  );

  test('benchmark.html: small send and receive runs on a worker', { timeout: 60_000 }, (t) =>
    withPage(t, 'benchmark.html', 'WebSocket benchmark', async (page, helpers) => {
      await smallBenchmarkParameters(page, { onWorker: true });
      await runBenchmarkButton(page, helpers, '#send-benchmark', 'Send', 'on a worker');
      await runBenchmarkButton(page, helpers, '#receive-benchmark', 'Receive', 'on a worker');
    }),
  );

  test('benchmark.html: bad parameters are reported, not run', { timeout: 30_000 }, (t) =>
    withPage(t, 'benchmark.html', 'WebSocket benchmark', async (page, { waitForText }) => {
      await page.fill('#multipliers', '1');
      await page.click('#send-benchmark');
      await waitForText('Error: every multiplier must be greater than 1 (got 1)');
      await page.fill('#multipliers', '2');
      await page.fill('#url', `ws://localhost:${PORT}/no_such_handler`);
      await page.fill('#stop-threshold', '10240');
      await page.click('#receive-benchmark');
      await waitForText(`Error: cannot connect to ws://localhost:${PORT}/no_such_handler`);
      assert.match(await page.locator('#status').textContent(), /^Failed: cannot connect/);
    }),
  );

  test('performance_test_iframe.html: postMessage-driven runs in the page and on a worker', { timeout: 60_000 }, (t) =>
    withPage(t, 'performance_test_iframe.html', 'WebSocket performance test (iframe)', async (page) => {
      // Opened directly, the page's parent is itself: collect what it reports.
      for (const [benchmarkName, dataType, isWorker] of [
        ['send', 'arraybuffer', false],
        ['receive', 'blob', true],
        ['batch', 'arraybuffer', true],
      ]) {
        const messages = await page.evaluate(
          (start) =>
            new Promise((resolve, reject) => {
              const seen = [];
              const timer = setTimeout(() => reject(new Error(`no "finished" within 20 s: ${JSON.stringify(seen)}`)), 20_000);
              addEventListener('message', function listener(event) {
                if (event.data?.command === 'start') return;
                seen.push(event.data);
                if (event.data?.command === 'finished') {
                  clearTimeout(timer);
                  removeEventListener('message', listener);
                  resolve(seen);
                }
              });
              postMessage(start, '*');
            }),
          {
            command: 'start',
            benchmarkName,
            dataType,
            async: !isWorker,
            verifyData: true,
            numIterations: 2,
            numWarmUpIterations: 1,
            isWorker,
            startSize: 65536,
          },
        );
        const label = `${benchmarkName} ${dataType} isWorker=${isWorker}`;
        const finished = messages.at(-1);
        assert.deepEqual(finished, { command: 'finished', ok: true }, `${label}: ${JSON.stringify(messages)}`);
        const kinds = benchmarkName === 'batch' ? 2 : 1;
        const measured = messages.filter((m) => m.command === 'measureValue');
        assert.equal(measured.length, 2 * kinds, label);
        for (const m of measured) {
          assert.equal(m.record.size, 65536, label);
          assert.equal(typeof m.value, 'number', label);
        }
        const place = isWorker ? 'on a worker' : 'in the page';
        assert.ok(messages.some((m) => m.command === 'log' && m.message.includes(`(${place})`)), label);
        assert.ok(messages.some((m) => m.command === 'summary' && /^65536\t/.test(m.message)), label);
      }
    }),
  );

  test('arraybuffer_benchmark.html: fills and verifies without a server', { timeout: 30_000 }, (t) =>
    withPage(t, 'arraybuffer_benchmark.html', 'ArrayBuffer benchmark', async (page, { value, waitForText }) => {
      await page.fill('#stop-threshold', '65537');
      await page.fill('#num-iterations', '1');
      await page.click('#run');
      await waitForText(/^(Finished|Error: .*)$/m);
      const log = await value('#log');
      assert.match(log, /^Finished$/m, log);
      for (const size of [1024, 4096, 16384, 65536]) assert.match(log, new RegExp(`^${size}\\t`, 'm'), log);
    }),
  );
});
