// Issue 18: Chromium loads a page over HTTPS from wshd (HTTP/2 by ALPN) and opens wss:// on
// the same origin; the server's access log proves the WebSocket went over HTTP/2 (RFC 8441,
// `http="2"`). The same page with HTTP/2 switched off in the browser still works, over an
// HTTP/1.1 upgrade (`http="1.1"`). The server runs with its own config on a port the OS
// picks (not 9998) and a certificate made here with openssl; Chromium trusts it through
// `--ignore-certificate-errors-spki-list`, so the connection is a valid TLS one, not one with
// an ignored error. Run from the repository root:
//
//     cargo build --workspace && node --test --test-concurrency=1 tests/browser/

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO_ROOT, freePort, launchBrowser, startServer, waitUntil } from './harness.mjs';

/** Makes a self-signed certificate for localhost; returns its paths and the SPKI hash. */
function makeCertificate(dir) {
  const cert = path.join(dir, 'server.pem');
  const key = path.join(dir, 'server.key');
  execFileSync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ], { stdio: 'ignore', timeout: 10_000 });
  const spki = execFileSync('sh', ['-c',
    `openssl x509 -in '${cert}' -pubkey -noout | openssl pkey -pubin -outform der | ` +
      'openssl dgst -sha256 -binary | base64'], { timeout: 10_000 }).toString().trim();
  return { cert, key, spki };
}

const PAGE = `<!doctype html><title>h2</title><script>
function echo() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket('wss://' + location.host + '/echo');
    ws.onopen = () => ws.send('over the page connection');
    ws.onmessage = (e) => { resolve(e.data); ws.close(1000); };
    ws.onerror = () => reject(new Error('WebSocket error'));
  });
}
</script>`;

/** Starts wshd with TLS on a free port; resolves `{ port, log(), stop() }` once it listens. */
async function startTlsServer(dir, certs) {
  await mkdir(path.join(dir, 'www'), { recursive: true });
  await writeFile(path.join(dir, 'www', 'index.html'), PAGE);
  const port = await freePort();
  const config = path.join(dir, 'server.toml');
  await writeFile(config, [
    '[server]', `listen = ["127.0.0.1:${port}"]`, `document_root = "${path.join(dir, 'www')}"`, 'workers = 0',
    '[handlers]', `dir = "${path.join(REPO_ROOT, 'target', 'debug')}"`, 'recursive = false', 'watch = false',
    '[tls]', `cert = "${certs.cert}"`, `key = "${certs.key}"`, '',
  ].join('\n'));
  const server = await startServer({ port, args: ['-c', config] });
  return { ...server, port };
}

/** The access-log line of the `n`-th WebSocket on /echo (0-based), bounded wait. */
async function accessLine(server, n) {
  return waitUntil(
    () => server.log().split('\n').filter((l) => l.includes('connection closed') && l.includes('route=/echo'))[n],
    { timeoutMs: 10_000, what: `the access-log line of WebSocket #${n + 1}` },
  );
}

describe('WebSockets over HTTP/2 with Chromium', { timeout: 90_000 }, () => {
  let dir;
  let certs;
  let server;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'wshd-h2-browser-'));
    certs = makeCertificate(dir);
    server = await startTlsServer(dir, certs);
  }, { timeout: 30_000 });

  after(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  }, { timeout: 20_000 });

  async function run(extraArgs) {
    const browser = await launchBrowser({
      extraArgs: [`--ignore-certificate-errors-spki-list=${certs.spki}`, ...extraArgs],
    });
    try {
      const page = await browser.context.newPage();
      const response = await page.goto(`https://localhost:${server.port}/index.html`);
      const pageProtocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
      const echoed = await page.evaluate(() => echo());
      return { status: response.status(), pageProtocol, echoed };
    } finally {
      await browser.close();
    }
  }

  test('the page and its wss:// share one HTTP/2 connection', async () => {
    const seen = await run([]);
    const line = await accessLine(server, 0);
    console.log(`page over ${seen.pageProtocol} (status ${seen.status}); echo: ${JSON.stringify(seen.echoed)}`);
    console.log(`server access log: ${line.trim()}`);
    assert.equal(seen.status, 200);
    assert.equal(seen.pageProtocol, 'h2', 'the page came over HTTP/2');
    assert.equal(seen.echoed, 'over the page connection');
    assert.match(line, /http="2"/, 'the server saw the WebSocket as an HTTP/2 stream');
    assert.match(line, /status=200/);
  });

  test('with HTTP/2 off in the browser, the same page uses an HTTP/1.1 upgrade', async () => {
    const seen = await run(['--disable-http2']);
    const line = await accessLine(server, 1);
    console.log(`page over ${seen.pageProtocol} (status ${seen.status}); echo: ${JSON.stringify(seen.echoed)}`);
    console.log(`server access log: ${line.trim()}`);
    assert.equal(seen.pageProtocol, 'http/1.1');
    assert.equal(seen.echoed, 'over the page connection');
    assert.match(line, /http="1.1"/);
    assert.match(line, /status=101/);
  });
});
