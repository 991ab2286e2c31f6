// End-to-end test of the tutorial page (handlers/htdocs/index.html) in headless Chromium,
// against `target/debug/wshd` started with no flags from the repository root, exactly as the
// README tells a newcomer. Run from the repository root:
//
//     cargo build --workspace && node --test tests/browser/
//
// Needs Debian's chromium at /usr/bin/chromium and `npm ci` in tests/browser.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PORT, launchBrowser, startServer, waitUntil } from './harness.mjs';

describe('tutorial page (index.html) against wshd with no flags', { timeout: 60_000 }, () => {
  let server;
  let browser;

  before(async () => {
    server = await startServer();
    browser = await launchBrowser();
  }, { timeout: 40_000 });

  after(async () => {
    await Promise.allSettled([browser?.close(), server?.stop()]);
  }, { timeout: 20_000 });

  /**
   * Opens `pageUrl`, clicks "Run WebSocket" and checks the two alerts, the received text and
   * the final status. On failure, the wshd output and the page's console are printed.
   */
  async function runTutorial(t, pageUrl, screenshotName) {
    const page = await browser.context.newPage();
    const dialogs = [];
    const consoleLines = [];
    page.on('dialog', (dialog) => {
      dialogs.push(dialog.message());
      dialog.accept().catch(() => {});
    });
    page.on('console', (msg) => consoleLines.push(`[console.${msg.type()}] ${msg.text()}`));
    page.on('pageerror', (err) => consoleLines.push(`[pageerror] ${err.message}`));
    try {
      const response = await page.goto(pageUrl);
      assert.equal(response?.status(), 200, `GET ${pageUrl} status`);
      assert.equal(await page.title(), 'WebSocket tutorial: echo');

      await page.getByRole('link', { name: 'Run WebSocket' }).click();
      await waitUntil(() => dialogs.length >= 2, { timeoutMs: 10_000, what: 'two alert dialogs' });
      assert.deepEqual(dialogs, ['Message is sent...', 'Message is received: Message to send']);
      assert.equal(await page.locator('#received').textContent(), 'Message to send');

      const statusHandle = await page.waitForFunction(
        () => {
          const text = document.getElementById('status').textContent;
          return text.startsWith('Connection is closed') ? text : null;
        },
        null,
        { timeout: 10_000 },
      );
      const status = await statusHandle.jsonValue();
      t.diagnostic(`status: ${status}`);
      // 1000 (normal) or 1005 (no status in the close frame) are clean closes; 1006 is not.
      assert.match(status, /^Connection is closed \(code (1000|1005)\)$/);
      // No extra alert (e.g. a second echo) arrived while the connection closed.
      assert.equal(dialogs.length, 2, `dialogs: ${JSON.stringify(dialogs)}`);

      const screenshot = path.join(browser.screenshotDir, screenshotName);
      await page.screenshot({ path: screenshot });
      t.diagnostic(`screenshot: ${screenshot}`);
    } catch (err) {
      const text = (selector) => page.locator(selector).textContent({ timeout: 1_000 }).catch((e) => `<${e.message}>`);
      console.error(`--- page state: status=${JSON.stringify(await text('#status'))} received=${JSON.stringify(await text('#received'))}`);
      console.error(`--- dialogs: ${JSON.stringify(dialogs)}`);
      console.error(`--- page console (${pageUrl}) ---\n${consoleLines.join('\n')}`);
      console.error(`--- wshd output ---\n${server.log()}--- end of wshd output ---`);
      throw err;
    } finally {
      await page.close().catch(() => {});
    }
  }

  test('http://localhost:9998/: Run WebSocket alerts sent and received', { timeout: 30_000 }, (t) =>
    runTutorial(t, `http://localhost:${PORT}/`, 'tutorial-localhost.png'),
  );

  test('http://127.0.0.1:9998/: the page (still using ws://localhost:9998/echo) works too', { timeout: 30_000 }, (t) =>
    runTutorial(t, `http://127.0.0.1:${PORT}/`, 'tutorial-127.0.0.1.png'),
  );
});
