import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Browser } from 'playwright-core';
import { Sandbox, type SandboxOpts } from 'e2b';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { chromiumSkip, launchChromium } from '../helpers/browser.ts';

/**
 * A real browser (Debian's Chromium) on a sandbox's port through the daemon,
 * as a user opens a web app an agent started: getHost's *.localhost name,
 * the traffic token once in the URL then a cookie, the page's own WebSocket,
 * and a page of another sandbox that may not use that cookie.
 */

const API_KEY = 'browser-ports-key';
const SERVER = readFileSync(new URL('../fixtures/port-server.py', import.meta.url), 'utf8');
const PORT = 8000;

describe('a browser on sandbox ports', { skip: chromiumSkip }, () => {
  const state = tempWorkspace('brig-browser-ports-');
  let daemon: RunningDaemon;
  let browser: Browser;
  const sandboxes: Sandbox[] = [];
  const opts = () => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;

  const serving = async (): Promise<Sandbox> => {
    const sandbox = await Sandbox.create('base', opts());
    sandboxes.push(sandbox);
    await sandbox.files.write('/tmp/port-server.py', SERVER);
    await sandbox.commands.run(`python3 /tmp/port-server.py ${PORT}`, { background: true, timeoutMs: 0 });
    await sandbox.commands.run(`for i in $(seq 200); do python3 -c "import socket; socket.create_connection(('127.0.0.1', ${PORT}))" 2>/dev/null && exit 0; sleep 0.05; done; exit 1`);
    return sandbox;
  };

  before(async () => {
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    for (const sandbox of sandboxes) await sandbox.kill().catch(() => {});
    await daemon.stop();
    state.remove();
  });

  test("getHost's name opens the page with the token once; its WebSocket echoes; the token leaves the address", async () => {
    const sandbox = await serving();
    const page = await browser.newPage();
    try {
      await page.goto(`http://${sandbox.getHost(PORT)}/page?brig_traffic_token=${sandbox.trafficAccessToken}`);
      assert.equal(page.url(), `http://${sandbox.getHost(PORT)}/page`);
      await page.waitForFunction(() => document.getElementById('out')?.textContent !== 'waiting');
      assert.equal(await page.textContent('#out'), 'echo:from the page');
      // Later visits need no token: the cookie carries it.
      await page.goto(`http://${sandbox.getHost(PORT)}/headers`);
      assert.equal(JSON.parse((await page.textContent('body')) ?? '{}').cookie, undefined, 'brig\'s cookie never reaches the server');
    } finally {
      await page.close();
    }
  });

  test("a page without the token is refused; another sandbox's page cannot use this one's cookie", async () => {
    const victim = await serving();
    const hostile = await serving();
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      const refused = await page.goto(`http://${victim.getHost(PORT)}/headers`);
      assert.equal(refused?.status(), 401);
      // The user has the victim's cookie, then visits the hostile sandbox's page, which fetches from the victim.
      await page.goto(`http://${victim.getHost(PORT)}/headers?brig_traffic_token=${victim.trafficAccessToken}`);
      await page.goto(`http://${hostile.getHost(PORT)}/page?brig_traffic_token=${hostile.trafficAccessToken}`);
      const hit = (url: string) =>
        page.evaluate(async (target) => {
          await fetch(target, { credentials: 'include', mode: 'no-cors' }).catch(() => {});
        }, url);
      await hit(`http://${victim.getHost(PORT)}/hit`);
      // The victim's own page does reach it: the refusal above is the origin's, not a broken fetch.
      await page.goto(`http://${victim.getHost(PORT)}/headers`);
      await hit(`http://${victim.getHost(PORT)}/hit`);
      const hits = await fetch(`${daemon.url}/hits`, { headers: { 'e2b-sandbox-id': victim.sandboxId, 'e2b-sandbox-port': String(PORT), 'x-api-key': API_KEY } });
      assert.equal(await hits.text(), '1', "only the victim's own page reached it, not the hostile page with the user's cookie");
      await page.goto(`http://${hostile.getHost(PORT)}/page`);
      const socket = await page.evaluate(
        (url) =>
          new Promise<string>((resolve) => {
            const ws = new WebSocket(url);
            ws.onopen = () => resolve('opened');
            ws.onerror = () => resolve('refused');
          }),
        `ws://${victim.getHost(PORT)}/ws`,
      );
      assert.equal(socket, 'refused', "a WebSocket from another sandbox's page with the user's cookie is refused");
    } finally {
      await context.close();
    }
  });
});
