// End-to-end test of the chat page (handlers/htdocs/chat.html on /chat, handlers/chat_wsh) in
// headless Chromium: two pages in room A chat through the page and see each other's
// messages rendered, a third page in room B sees none of it, and markup in a message is shown
// as text, never run. Run from the repository root:
//
//     cargo build --workspace && node --test --test-concurrency=1 tests/browser/
//
// The server is `target/debug/wshd` with config/server.toml as it is: a master and its
// worker processes (2 or more), so the pages may land on different workers; the rooms span
// them (docs/decisions/0015-rooms-across-workers.md). Like the other files here it uses port
// 9998, so they run one at a time.

import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { PORT, REPO_ROOT, freePort, launchBrowser, startServer, waitForFreePort, waitUntil } from './harness.mjs';

const BASE = `http://localhost:${PORT}`;
const XSS = '<img src=x onerror="window.__pwned = true"> & <b>bold</b>';

describe('chat.html against wshd', { timeout: 180_000 }, () => {
  let server;
  let browser;
  let configDir;
  let adminPort;
  const pages = [];

  before(async () => {
    await waitForFreePort();
    // config/server.toml as it is, plus an admin listener for /metrics.
    adminPort = await freePort();
    configDir = await mkdtemp(path.join(os.tmpdir(), 'wshd-chat-'));
    const config = (await readFile(path.join(REPO_ROOT, 'config', 'server.toml'), 'utf8')).replace(
      /^# admin_listen = .*$/m,
      `admin_listen = "127.0.0.1:${adminPort}"`,
    );
    assert.ok(config.includes(`admin_listen = "127.0.0.1:${adminPort}"`), 'the admin line was found');
    const configFile = path.join(configDir, 'server.toml');
    await writeFile(configFile, config);
    server = await startServer({ args: ['-c', configFile] });
    browser = await launchBrowser();
  }, { timeout: 120_000 });

  after(async () => {
    await Promise.allSettled(pages.map((page) => page.close()));
    await Promise.allSettled([browser?.close(), server?.stop()]);
    if (configDir) await rm(configDir, { recursive: true, force: true });
  }, { timeout: 20_000 });

  /** Opens chat.html, joins `room` as `nick` and waits until its own join is shown. */
  async function joinAs(room, nick) {
    const page = await browser.context.newPage();
    pages.push(page);
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(err.message));
    const response = await page.goto(`${BASE}/chat.html`);
    assert.equal(response?.status(), 200);
    assert.equal(await page.title(), 'wshd chat');
    await page.fill('#room', room);
    await page.fill('#nick', nick);
    await page.click('#join');
    await waitForLine(page, `${nick} joined`);
    await waitUntil(() => page.isEnabled('#send'), { timeoutMs: 10_000, what: `${nick} can send` });
    return page;
  }

  /** The lines of the message list, as shown (text). */
  const lines = (page) => page.locator('#messages li').allTextContents();
  const online = (page) => page.locator('#online li').allTextContents();

  async function waitForLine(page, line) {
    await waitUntil(async () => (await lines(page)).includes(line), {
      timeoutMs: 10_000,
      what: `the line ${JSON.stringify(line)}`,
    });
  }

  async function say(page, text) {
    await page.fill('#text', text);
    await page.click('#send');
  }

  test('two pages in room A chat, a page in room B sees nothing, markup stays text', { timeout: 120_000 }, async (t) => {
    try {
      const carol = await joinAs('B', 'carol');
      const alice = await joinAs('A', 'alice');
      const bob = await joinAs('A', 'bob');
      await waitForLine(alice, 'bob joined');
      assert.deepEqual(await online(alice), ['alice', 'bob']);
      assert.deepEqual(await online(bob), ['alice', 'bob']);

      await say(alice, 'hello bob');
      await waitForLine(bob, 'alice: hello bob');
      await waitForLine(alice, 'alice: hello bob');
      await say(bob, 'hi alice');
      await waitForLine(alice, 'bob: hi alice');

      await say(bob, XSS);
      await waitForLine(alice, `bob: ${XSS}`);
      const shown = await alice.locator('#messages li .text').last().textContent();
      assert.equal(shown, XSS, 'the message is shown as its text');
      assert.equal(await alice.locator('#messages img, #messages b').count(), 0, 'no element made from it');
      assert.equal(await alice.evaluate(() => window.__pwned === true), false, 'no handler ran');

      // Room B: its own message arrives after everything said in A, and nothing of A before it.
      await say(carol, 'anyone in B?');
      await waitForLine(carol, 'carol: anyone in B?');
      assert.deepEqual(await lines(carol), ['carol joined', 'carol: anyone in B?']);
      assert.deepEqual(await online(carol), ['carol']);

      await bob.click('#leave');
      await waitForLine(alice, 'bob left');
      assert.deepEqual(await online(alice), ['alice']);
      // A page that left is not also "gone" (that is for connections lost without leaving).
      await say(alice, 'bye bob');
      await waitForLine(alice, 'alice: bye bob');
      assert.deepEqual((await lines(alice)).slice(-2), ['bob left', 'alice: bye bob']);
      t.diagnostic(`alice saw: ${JSON.stringify(await lines(alice))}`);
      // Chromium offers permessage-deflate: the room's messages reached these pages as
      // compressed frames (each worker process compresses a message once for its members).
      const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      const sample = (name) => Number(metrics.match(new RegExp(`^${name} (\\d+)$`, 'm'))?.[1] ?? NaN);
      const [compressions, compressed] = ['wshd_room_compressions_total', 'wshd_room_compressed_deliveries_total'].map(sample);
      assert.ok(compressions > 0 && compressed >= compressions, `compressions ${compressions}, compressed deliveries ${compressed}`);
      t.diagnostic(`room frames compressed: ${compressions}, compressed deliveries: ${compressed}`);
      for (const page of [alice, bob, carol]) assert.deepEqual(page.errors, [], 'uncaught errors in the page');
      const screenshot = path.join(browser.screenshotDir, 'chat.png');
      await alice.screenshot({ path: screenshot });
      t.diagnostic(`screenshot: ${screenshot}`);
    } catch (err) {
      console.error(`--- wshd output ---\n${server.log()}--- end of wshd output ---`);
      throw err;
    }
  });

  test('after an unexpected close the page reconnects with since and shows what it missed', { timeout: 60_000 }, async (t) => {
    try {
      const gina = await joinAs('D', 'gina');
      const hank = await joinAs('D', 'hank');
      await say(hank, 'seen by both');
      await waitForLine(gina, 'hank: seen by both');
      // A binary message breaks the app's rule: the server closes the page's socket (1003).
      await gina.evaluate(() => socket.send(new Uint8Array([1, 2, 3])));
      await waitUntil(
        async () => (await lines(gina)).some((l) => l.startsWith('Connection lost (1003 text messages only)')),
        { timeoutMs: 10_000, what: 'the close shown' },
      );
      // Hold the page's reconnect (due 0.5 s after the close) until hank has said something.
      const held = await gina.evaluate(() => {
        clearTimeout(reconnectTimer);
        return socket === null;
      });
      assert.ok(held, 'the page had not reconnected yet');
      await waitForLine(hank, 'gina left');
      await say(hank, 'said while gina was away');
      await waitForLine(hank, 'hank: said while gina was away');
      await gina.evaluate(() => connect());
      await waitForLine(gina, 'Reconnected: every missed message was recovered');
      const shown = await lines(gina);
      const missed = shown.indexOf('hank: said while gina was away');
      assert.ok(missed >= 0 && missed < shown.indexOf('Reconnected: every missed message was recovered'), shown.join('\n'));
      assert.equal(shown.filter((l) => l === 'hank: seen by both').length, 1, 'nothing shown twice');
      t.diagnostic(`gina saw: ${JSON.stringify(shown)}`);
      for (const page of [gina, hank]) assert.deepEqual(page.errors, [], 'uncaught errors in the page');
    } catch (err) {
      console.error(`--- wshd output ---\n${server.log()}--- end of wshd output ---`);
      throw err;
    }
  });

  test('after the worker processes die, the pages reconnect and recover from the history the master keeps', { timeout: 60_000 }, async (t) => {
    try {
      const dave = await joinAs('C', 'dave');
      const erin = await joinAs('C', 'erin');
      await say(dave, 'before the crash');
      await waitForLine(erin, 'dave: before the crash');
      // Every serving worker (the last start of each): the master keeps the rooms' history
      // and gives it to the replacements, so the reconnected pages recover.
      const pids = new Map();
      for (const [, n, pid] of server.log().matchAll(/worker (\d+) started pid=(\d+)/g)) pids.set(n, Number(pid));
      assert.ok(pids.size > 0, 'the master logged its workers');
      for (const pid of pids.values()) process.kill(pid, 'SIGKILL');
      for (const page of [dave, erin]) {
        await waitUntil(async () => (await lines(page)).some((l) => l.startsWith('Connection lost (1006)')), {
          timeoutMs: 10_000,
          what: 'the lost connection shown',
        });
        await waitForLine(page, 'Reconnected: every missed message was recovered');
      }
      await waitUntil(async () => (await online(dave)).join() === 'dave,erin', {
        timeoutMs: 10_000,
        what: 'both back online',
      });
      await say(erin, 'after the crash');
      await waitForLine(dave, 'erin: after the crash');
      assert.equal(await dave.locator('#status').textContent(), 'In room C as dave');
      t.diagnostic(`dave saw: ${JSON.stringify(await lines(dave))}`);
      for (const page of [dave, erin]) assert.deepEqual(page.errors, [], 'uncaught errors in the page');
    } catch (err) {
      console.error(`--- wshd output ---\n${server.log()}--- end of wshd output ---`);
      throw err;
    }
  });
});
