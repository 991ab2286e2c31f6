// Scale-out end to end (issue 17): two headless-Chromium pages chat through chat.html while
// served by different wshd nodes that share the room through Redis, with Debian's nginx in
// front (config/nginx/wshd-cluster.conf, its upstream pointed at three nodes on free ports).
// Then the node of one page is SIGKILLed: the other page sees it leave (presence expiry,
// heartbeat 200 ms here), and the page reconnects through nginx to a live node, where
// `&since=` replays what it missed from the history in Redis. Run from the repository root:
//
//     cargo build --workspace && node --test --test-concurrency=1 tests/browser/
//
// Everything it starts is private and on free ports: one `redis-server` (no persistence),
// three `target/debug/wshd` nodes (`workers = 0`, so a SIGKILL takes the node whole) and
// one nginx. Port 9998 is not used.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO_ROOT, freePort, launchBrowser, startProcess, startServer, waitForListener, waitUntil } from './harness.mjs';

const REDIS_SERVER = '/usr/bin/redis-server';
const NGINX = '/usr/sbin/nginx';
const NODES = 3;

/** A private Redis on a free port, without persistence. */
async function startRedis() {
  assert.ok(existsSync(REDIS_SERVER), `${REDIS_SERVER} is missing: .ci/run installs Debian's redis-server`);
  const port = await freePort();
  const redis = startProcess(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']);
  await waitForListener(port, { what: `redis-server on port ${port}` });
  return { ...redis, url: `redis://127.0.0.1:${port}/0` };
}

/** One wshd node with the examples (cwd = repository root) and `[broker] url`. */
async function startNode(dir, index, redisUrl) {
  const port = await freePort();
  const config = path.join(dir, `node${index}.toml`);
  await writeFile(
    config,
    [
      '[server]',
      `listen = ["127.0.0.1:${port}"]`,
      'document_root = "handlers/htdocs"',
      'workers = 0',
      '[handlers]',
      'dir = "target/debug"',
      'recursive = false',
      '[broker]',
      `url = "${redisUrl}"`,
      'heartbeat_ms = 200',
      '',
    ].join('\n'),
  );
  const node = await startServer({ port, args: ['-c', config] });
  return { ...node, port, index };
}

/** nginx running config/nginx/wshd-cluster.conf with its upstream set to `nodes`. */
async function startNginx(dir, nodes) {
  assert.ok(existsSync(NGINX), `${NGINX} is missing: .ci/run installs Debian's nginx`);
  let snippet = await readFile(path.join(REPO_ROOT, 'config', 'nginx', 'wshd-cluster.conf'), 'utf8');
  const port = await freePort();
  const replacements = [
    ['127.0.0.1:9998', `127.0.0.1:${nodes[0].port}`],
    ['127.0.0.1:9997', `127.0.0.1:${nodes[1].port}`],
    ['127.0.0.1:9996', `127.0.0.1:${nodes[2].port}`],
    ['listen 80;', `listen 127.0.0.1:${port};`],
  ];
  for (const [from, to] of replacements) {
    assert.ok(snippet.includes(from), `config/nginx/wshd-cluster.conf no longer has \`${from}\``);
    snippet = snippet.replace(from, to);
  }
  await writeFile(path.join(dir, 'cluster.conf'), snippet);
  const temps = ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'];
  for (const sub of temps) await mkdir(path.join(dir, 'tmp', sub), { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  await writeFile(
    conf,
    `worker_processes 1;\nerror_log ${dir}/error.log info;\nevents { worker_connections 128; }\n` +
      `http {\n  access_log ${dir}/access.log;\n` +
      temps.map((sub) => `  ${sub === 'body' ? 'client_body' : sub}_temp_path ${dir}/tmp/${sub};\n`).join('') +
      `  include ${dir}/cluster.conf;\n}\n`,
  );
  const nginx = startProcess(NGINX, ['-e', `${dir}/error.log`, '-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/nginx.pid;`]);
  await waitForListener(port, { what: `nginx on port ${port}` });
  return { ...nginx, port };
}

const accepted = (node) => (node.log().match(/handshake accepted/g) || []).length;

describe('chat.html across three wshd nodes behind nginx, rooms in Redis', { timeout: 180_000 }, () => {
  let dir;
  let redis;
  const nodes = [];
  let nginx;
  let browser;
  const pages = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'wshd-cluster-'));
    redis = await startRedis();
    for (let i = 0; i < NODES; i += 1) nodes.push(await startNode(dir, i, redis.url));
    nginx = await startNginx(dir, nodes);
    browser = await launchBrowser();
  }, { timeout: 120_000 });

  after(async () => {
    await Promise.allSettled(pages.map((page) => page.close()));
    await Promise.allSettled([browser?.close(), nginx?.stop(), ...nodes.map((node) => node.stop())]);
    await redis?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, { timeout: 30_000 });

  const lines = (page) => page.locator('#messages li').allTextContents();
  const online = (page) => page.locator('#online li').allTextContents();

  async function waitForLine(page, line, timeoutMs = 10_000) {
    await waitUntil(async () => (await lines(page)).includes(line), { timeoutMs, what: `the line ${JSON.stringify(line)}` });
  }

  async function say(page, text) {
    await page.fill('#text', text);
    await page.click('#send');
  }

  /** Opens chat.html through nginx and joins `room` as `nick`; returns the page and its node. */
  async function joinThroughNginx(room, nick) {
    const before = nodes.map(accepted);
    const page = await browser.context.newPage();
    pages.push(page);
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(err.message));
    const response = await page.goto(`http://127.0.0.1:${nginx.port}/chat.html`);
    assert.equal(response?.status(), 200);
    await page.fill('#room', room);
    await page.fill('#nick', nick);
    await page.click('#join');
    await waitForLine(page, `${nick} joined`);
    const home = await waitUntil(() => nodes.find((node, i) => accepted(node) > before[i]), {
      timeoutMs: 5_000,
      what: `the node that accepted ${nick}'s socket`,
    });
    return { page, home };
  }

  test('pages on different nodes chat; a SIGKILLed node\'s page leaves and recovers on another node', { timeout: 120_000 }, async (t) => {
    try {
      const alice = await joinThroughNginx('hall', 'alice');
      const bob = await joinThroughNginx('hall', 'bob');
      t.diagnostic(`alice is served by node ${alice.home.index}, bob by node ${bob.home.index}`);
      assert.notEqual(alice.home, bob.home, 'least_conn put the two pages on different nodes');
      await waitForLine(alice.page, 'bob joined');
      await waitUntil(async () => (await online(alice.page)).join() === 'alice,bob', { timeoutMs: 5_000, what: 'alice sees both' });
      assert.deepEqual(await online(bob.page), ['alice', 'bob'], 'bob\'s join read the presence of the other node');

      await say(alice.page, 'hello from one node');
      await waitForLine(bob.page, 'alice: hello from one node');
      await say(bob.page, 'hi from another');
      await waitForLine(alice.page, 'bob: hi from another');

      // SIGKILL bob's node: no goodbye, so alice learns of it from the node's expired liveness.
      // Hold bob's page's reconnect until alice has said something it must recover.
      const killedAt = Date.now();
      process.kill(bob.home.pid, 'SIGKILL');
      await waitUntil(async () => (await lines(bob.page)).some((l) => l.startsWith('Connection lost (1006)')), {
        timeoutMs: 10_000,
        what: 'bob\'s page to show the lost connection',
      });
      assert.ok(await bob.page.evaluate(() => { clearTimeout(reconnectTimer); return socket === null; }), 'bob had not reconnected yet');
      await waitForLine(alice.page, 'bob left (connection lost)', 30_000);
      const leftAfter = Date.now() - killedAt;
      t.diagnostic(`alice saw bob leave ${leftAfter} ms after his node was SIGKILLed (heartbeat 200 ms)`);
      assert.deepEqual(await online(alice.page), ['alice']);

      await say(alice.page, 'said while bob was away');
      await waitForLine(alice.page, 'alice: said while bob was away');
      const before = nodes.map(accepted);
      await bob.page.evaluate(() => connect());
      await waitForLine(bob.page, 'Reconnected: every missed message was recovered');
      const newHome = nodes.find((node, i) => node !== bob.home && accepted(node) > before[i]);
      assert.ok(newHome, 'a live node accepted bob\'s reconnect');
      t.diagnostic(`bob reconnected through nginx to node ${newHome.index} with since and recovered`);
      const shown = await lines(bob.page);
      const missed = shown.indexOf('alice: said while bob was away');
      assert.ok(missed >= 0 && missed < shown.indexOf('Reconnected: every missed message was recovered'), shown.join('\n'));
      assert.equal(shown.filter((l) => l === 'alice: hello from one node').length, 1, 'nothing shown twice');

      await say(bob.page, 'back on another node');
      await waitForLine(alice.page, 'bob: back on another node');
      t.diagnostic(`bob saw: ${JSON.stringify(await lines(bob.page))}`);
      for (const { page } of [alice, bob]) assert.deepEqual(page.errors, [], 'uncaught errors in the page');
    } catch (err) {
      for (const node of nodes) console.error(`--- node ${node.index} output ---\n${node.log()}`);
      const nginxLog = await readFile(path.join(dir, 'error.log'), 'utf8').catch((e) => String(e));
      console.error(`--- nginx error log ---\n${nginxLog}--- end of the logs ---`);
      throw err;
    }
  });
});
