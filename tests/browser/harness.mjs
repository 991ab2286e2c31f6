// Shared helpers for the headless-browser end-to-end tests.
//
// They start `target/debug/wshd` the way a newcomer does (no flags, cwd = repository root, so
// config/server.toml applies: port 9998, document root handlers/htdocs, plugins from
// target/debug) and drive Debian's Chromium through playwright-core. Every wait is bounded.
//
// Not a test file itself: node's runner only picks up *.test.mjs in this directory.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const WSHD_BIN = path.join(REPO_ROOT, 'target', 'debug', 'wshd');
export const PORT = 9998;
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  // --user-data-dir is not passed here: playwright refuses it in `args` and takes the
  // (fresh, temporary) profile directory as the first argument of launchPersistentContext.
];

/** Removes ANSI colour escapes, so captured logs stay readable in CI output. */
export function stripAnsi(text) {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*[A-Za-z]/g, '');
}

/** Polls `predicate` (sync or async) every `intervalMs` until it is truthy; throws after `timeoutMs`. */
/** A timer that does not keep node alive (so a won race leaves nothing pending). */
function timeout(ms, value = null) {
  return sleep(ms, value, { ref: false });
}

export async function waitUntil(predicate, { timeoutMs, intervalMs = 50, what }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Resolves true if something accepts a TCP connection on host:port within `timeoutMs`. */
function canConnect(host, port, timeoutMs = 500) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Resolves null if host:port can be bound (then released), else the error code. */
function bindError(host, port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', (err) => resolve(err.code || String(err)));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

/** Throws a clear error unless port 9998 is free on both loopback addresses wshd listens on. */
export async function assertPortFree(port = PORT) {
  for (const host of ['127.0.0.1', '::1']) {
    const code = await bindError(host, port);
    // EADDRNOTAVAIL: this machine has no IPv6 loopback; wshd would report that itself.
    if (code && code !== 'EADDRNOTAVAIL') {
      throw new Error(
        `port ${port} is not free on ${host} (${code}): another wshd or some other server is ` +
          `running there. Stop it (e.g. \`ss -ltnp 'sport = :${port}'\` shows who) and re-run.`,
      );
    }
  }
}

/**
 * Waits (bounded) until `port` is free, e.g. while the previous test file's server stops
 * (the files share port 9998 and run one at a time).
 */
export async function waitForFreePort({ port = PORT, timeoutMs = 90_000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await assertPortFree(port);
      return;
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await sleep(250);
    }
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago (the kernel's pick). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`; throws after `timeoutMs`. */
export async function waitForListener(port, { timeoutMs = 10_000, what = `a listener on port ${port}` } = {}) {
  await waitUntil(() => canConnect('127.0.0.1', port), { timeoutMs, intervalMs: 50, what });
}

/**
 * Starts `program args` in `cwd` (the repository root unless given), collecting its
 * stdout+stderr. Returns `{ child, pid, log(), exited(), stop() }`: `stop` sends `stopSignal`
 * (SIGTERM unless given), then SIGKILL after `timeoutMs`; the process is also killed if this
 * one exits first.
 */
export function startProcess(program, args, { cwd = REPO_ROOT, stopSignal = 'SIGTERM', name = program } = {}) {
  const child = spawn(program, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk) => (output += chunk));
  let exit = null;
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolve(exit);
    });
    child.once('error', (err) => {
      exit = { error: err };
      resolve(exit);
    });
  });
  // If this process dies without running the after-hook, do not leave the child behind.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  return {
    child,
    pid: child.pid,
    log: () => stripAnsi(output),
    exited: () => exit,
    async stop({ timeoutMs = 5_000 } = {}) {
      process.removeListener('exit', killOnExit);
      if (exit) return exit;
      child.kill(stopSignal);
      const graceful = await Promise.race([exited, timeout(timeoutMs)]);
      if (graceful) return graceful;
      child.kill('SIGKILL');
      const killed = await Promise.race([exited, timeout(2_000)]);
      if (!killed) throw new Error(`${name} (pid ${child.pid}) did not exit even after SIGKILL`);
      return killed;
    },
  };
}

/**
 * Starts `target/debug/wshd` with no flags (or with `args`) in the repository root and waits
 * (bounded) until 127.0.0.1:`port` (9998 unless given: `args` must then make wshd listen
 * there) accepts connections. Returns a handle with `log()`
 * (stdout+stderr so far) and `stop()` (bounded; safe to call twice).
 */
export async function startServer({ readyTimeoutMs = 15_000, args = [], port = PORT } = {}) {
  if (!existsSync(WSHD_BIN)) {
    throw new Error(
      `${WSHD_BIN} does not exist: build it first with \`cargo build --workspace\` ` +
        `in ${REPO_ROOT} (the browser tests do not build anything).`,
    );
  }
  await assertPortFree(port);

  const server = startProcess(WSHD_BIN, args, { stopSignal: 'SIGINT', name: 'wshd' });
  const exit = () => server.exited();

  try {
    await waitUntil(
      async () => {
        if (exit()) {
          throw new Error(`wshd exited before it was ready (${JSON.stringify(exit())})`);
        }
        return canConnect('127.0.0.1', port);
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 100, what: `wshd to accept connections on 127.0.0.1:${port}` },
    );
  } catch (err) {
    await server.stop().catch(() => {});
    err.message += `\n--- wshd output ---\n${server.log()}--- end of wshd output ---`;
    throw err;
  }
  return server;
}

/**
 * Launches Debian's Chromium headless with a fresh temporary profile (and `extraArgs`). Returns
 * `{ context, screenshotDir, close() }`; close() is bounded and removes the profile.
 */
export async function launchBrowser({ extraArgs = [] } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} does not exist: install Debian's chromium (\`apt-get install -y chromium\`, ` +
        `as root) or point CHROMIUM_PATH at a Chromium binary.`,
    );
  }
  const profileDir = await mkdtemp(path.join(os.tmpdir(), 'wshd-chromium-profile-'));
  const screenshotDir = await mkdtemp(path.join(os.tmpdir(), 'wshd-browser-screenshots-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...extraArgs],
      timeout: 20_000,
    });
  } catch (err) {
    await rm(profileDir, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(10_000);
  return {
    context,
    screenshotDir,
    async close() {
      await Promise.race([context.close().catch(() => {}), timeout(10_000)]);
      await rm(profileDir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
