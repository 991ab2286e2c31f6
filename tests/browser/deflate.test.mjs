// Chromium negotiates permessage-deflate (RFC 7692) with wshd's /echo, and not with
// /echo_noext (whose handler declines extensions, like mod_pywebsocket's echo_noext_wsh.py).
// Prints the handshake as both sides saw it: the browser's `WebSocket.extensions` and the
// server's "handshake accepted" log line. Run from the repository root:
//
//     cargo build --workspace && node --test --test-concurrency=1 tests/browser/

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { PORT, launchBrowser, startServer, waitUntil } from './harness.mjs';

describe('permessage-deflate with Chromium', { timeout: 60_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  }, { timeout: 40_000 });

  after(async () => {
    await Promise.allSettled([browser?.close(), server?.stop()]);
  }, { timeout: 20_000 });

  /** Connects from a page, echoes a compressible message, returns what the browser saw. */
  async function handshake(resource) {
    const page = await browser.context.newPage();
    try {
      await page.goto(`http://localhost:${PORT}/`);
      return await page.evaluate(
        (url) =>
          new Promise((resolve, reject) => {
            const ws = new WebSocket(url);
            const message = 'compress me '.repeat(200);
            ws.onopen = () => ws.send(message);
            ws.onmessage = (event) => {
              resolve({ extensions: ws.extensions, echoed: event.data === message });
              ws.close(1000);
            };
            ws.onerror = () => reject(new Error(`WebSocket error on ${url}`));
          }),
        `ws://localhost:${PORT}${resource}`,
      );
    } finally {
      await page.close();
    }
  }

  /** The server's "handshake accepted" log line for `resource`. */
  async function serverLine(resource) {
    let line;
    await waitUntil(
      () => {
        line = server
          .log()
          .split('\n')
          .find((l) => l.includes('handshake accepted') && l.includes(`path=${resource} `));
        return Boolean(line);
      },
      { timeoutMs: 5_000, what: `the server's handshake line for ${resource}` },
    );
    return line;
  }

  test('/echo negotiates permessage-deflate and echoes compressed messages', async (t) => {
    const seen = await handshake('/echo');
    const line = await serverLine('/echo');
    t.diagnostic(`browser: extensions = ${JSON.stringify(seen.extensions)}`);
    t.diagnostic(`server:  ${line}`);
    assert.match(seen.extensions, /^permessage-deflate/);
    assert.ok(seen.echoed, 'the compressed echo matches');
    assert.match(line, /extensions="?permessage-deflate/);
  });

  test('/echo: both sides reset per message (issue 16) and a run of messages echoes', async (t) => {
    const page = await browser.context.newPage();
    try {
      await page.goto(`http://localhost:${PORT}/`);
      const seen = await page.evaluate(
        (url) =>
          new Promise((resolve, reject) => {
            const ws = new WebSocket(url);
            // Similar JSON-like messages (what context takeover would have helped with), an
            // empty one and a large one; each must come back exactly.
            const messages = [];
            for (let i = 0; i < 30; i += 1) {
              messages.push(JSON.stringify({ type: 'update', seq: i, items: [{ id: i * 7, name: `item-${i}` }] }));
            }
            messages.push('', 'x'.repeat(100_000), messages[0]);
            let next = 0;
            let mismatches = 0;
            ws.onopen = () => ws.send(messages[0]);
            ws.onmessage = (event) => {
              if (event.data !== messages[next]) mismatches += 1;
              next += 1;
              if (next < messages.length) {
                ws.send(messages[next]);
              } else {
                resolve({ extensions: ws.extensions, echoed: next, mismatches });
                ws.close(1000);
              }
            };
            ws.onerror = () => reject(new Error(`WebSocket error on ${url}`));
          }),
        `ws://localhost:${PORT}/echo`,
      );
      t.diagnostic(`browser: extensions = ${JSON.stringify(seen.extensions)}, ${seen.echoed} echoes`);
      assert.equal(
        seen.extensions,
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
      );
      assert.deepEqual([seen.echoed, seen.mismatches], [33, 0]);
    } finally {
      await page.close();
    }
  });

  test('/echo_noext declines it', async (t) => {
    const seen = await handshake('/echo_noext');
    const line = await serverLine('/echo_noext');
    t.diagnostic(`browser: extensions = ${JSON.stringify(seen.extensions)}`);
    t.diagnostic(`server:  ${line}`);
    assert.equal(seen.extensions, '');
    assert.ok(seen.echoed);
    assert.match(line, /extensions=""/);
  });
});
