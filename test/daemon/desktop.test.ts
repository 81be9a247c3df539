import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Sandbox } from '@e2b/desktop';
import type { Browser } from 'playwright-core';
import { tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { seedTemplateImage } from '../helpers/images.ts';
import { chromiumSkip, launchChromium } from '../helpers/browser.ts';

/**
 * The real @e2b/desktop SDK, unchanged, against brig serve and brig's
 * desktop template: its create (Xvfb and XFCE started by the SDK's own
 * commands), screenshots, mouse and keyboard, launching an application, and
 * the VNC stream (noVNC through the sandbox's port 6080) in a real browser;
 * then seed 003's gui job in the same template.
 */

const API_KEY = 'desktop-key';
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A PNG's width and height, from its IHDR. */
function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const buffer = Buffer.from(bytes);
  assert.deepEqual(buffer.subarray(0, 8), PNG_SIGNATURE, 'a PNG');
  return { width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20) };
}

/** Asks again, a bounded number of times, until the check holds: a desktop takes its time on a loaded machine. */
async function until(check: () => Promise<boolean>, attempts = 300): Promise<void> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (await check().catch(() => false)) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  assert.fail(`never came true: ${check.toString()}`);
}

describe('@e2b/desktop against brig', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  const state = tempWorkspace('brig-desktop-');
  let daemon: RunningDaemon;
  let desktop: Sandbox;

  /** The first visible window of an application, once it has one. */
  const windowOf = async (application: string): Promise<string> => {
    let found = '';
    await until(async () => (found = (await desktop.getApplicationWindows(application)).find(Boolean) ?? '') !== '');
    return found;
  };

  before(async () => {
    seedTemplateImage(state.dir, 'desktop');
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY, pool: 0 });
    desktop = await Sandbox.create({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, timeoutMs: 600_000 });
  });
  after(async () => {
    await desktop?.kill().catch(() => {});
    await daemon.stop();
    state.remove();
  });

  test('a screenshot is a PNG of the screen; the screen is the size asked for', async () => {
    assert.deepEqual(await desktop.getScreenSize(), { width: 1024, height: 768 });
    assert.deepEqual(pngSize(await desktop.screenshot()), { width: 1024, height: 768 });
  });

  test('the mouse moves where it is told, and clicks', async () => {
    await desktop.moveMouse(200, 150);
    assert.deepEqual(await desktop.getCursorPosition(), { x: 200, y: 150 });
    await desktop.leftClick();
    await desktop.rightClick(300, 300);
    await desktop.press('escape');
    await desktop.doubleClick(10, 10);
    await desktop.scroll('down', 2);
    await desktop.drag([100, 100], [150, 150]);
  });

  test('an application it launches shows in a window; text typed into it changes its own state', async () => {
    await desktop.launch('xfce4-terminal');
    const window = await windowOf('xfce4-terminal');
    assert.match(await desktop.getWindowTitle(window), /^Terminal - user@/);
    await until(async () => (await desktop.getCurrentWindowId()) === window);
    // Typed into the terminal, whose shell expands $TERM: the file is the terminal's doing.
    await desktop.write('echo "typed in $TERM" > /tmp/typed.txt');
    await desktop.press('enter');
    await until(async () => (await desktop.files.read('/tmp/typed.txt').catch(() => '')) !== '');
    assert.equal(await desktop.files.read('/tmp/typed.txt'), 'typed in xterm-256color\n');
    const shot = await desktop.screenshot();
    assert.deepEqual(pngSize(shot), { width: 1024, height: 768 });
    // Windows on it, not a blank frame: a blank 1024×768 PNG is a few KiB.
    assert.ok(shot.length > 20_000, `${shot.length} bytes`);
    if (process.env.BRIG_SCREENSHOTS) writeFileSync(`${process.env.BRIG_SCREENSHOTS}/desktop-terminal.png`, shot);
  });

  test('an editor launched by its desktop file name takes typed text: its title says the document changed', async () => {
    await desktop.launch('org.xfce.mousepad');
    const window = await windowOf('mousepad');
    assert.equal(await desktop.getWindowTitle(window), 'Untitled 1 - Mousepad');
    await until(async () => (await desktop.getCurrentWindowId()) === window);
    await desktop.write('hello from brig');
    await until(async () => (await desktop.getWindowTitle(window)) === '*Untitled 1 - Mousepad');
  });

  test("open() of a page opens Firefox ESR, which renders it under its own seccomp sandbox over brig's", async () => {
    await desktop.files.write('/tmp/page.html', '<title>brig page</title><h1>hello</h1>');
    await desktop.open('/tmp/page.html');
    const window = await windowOf('firefox-esr');
    await until(async () => (await desktop.getWindowTitle(window)).includes('brig page'));
    // Its content processes stack their own filter on brig's: its sandbox runs, without the user namespace the jail refuses.
    // ([-]: the pattern must not match the shell that runs it; a process just forked has yet to install its filter.)
    await until(async () => (await desktop.commands.run('for p in $(pgrep -f "[-]contentproc"); do grep Seccomp_filters: /proc/$p/status; done | sort -u')).stdout === 'Seccomp_filters:\t2\n');
  });

  test("seed 003's gui job: an xdotool script in a desktop sandbox, its screenshots back as artifacts", async () => {
    const headers = { 'x-api-key': API_KEY, 'content-type': 'application/json' };
    const script = [
      'xfce4-terminal &',
      'for i in $(seq 300); do xdotool search --onlyvisible --class xfce4-terminal >/dev/null && break; sleep 0.1; done',
      'sleep 1',
      'xdotool type --delay 20 "echo from-the-gui-job > /tmp/gui.txt"',
      'xdotool key Return',
      'for i in $(seq 300); do [ -s /tmp/gui.txt ] && break; sleep 0.1; done',
      'screenshot "typed it"',
      'cat /tmp/gui.txt',
      'exit 3',
    ].join('\n');
    const scheduled = await fetch(`${daemon.url}/schedule`, { method: 'POST', headers, body: JSON.stringify({ kind: 'gui', code: script, timeout: 600 }) });
    assert.equal(scheduled.status, 200, await scheduled.clone().text());
    const { job_id: id } = (await scheduled.json()) as { job_id: string };
    let job: { state: string; exit_code: number | null; stdout: string; stderr: string; artifacts: Array<{ index: number; path: string; bytes: number | null; error?: string }> };
    do job = (await (await fetch(`${daemon.url}/v1/jobs/${id}/wait?timeout=600`, { headers })).json()) as typeof job;
    while (job.state === 'queued' || job.state === 'running');
    assert.equal(job.exit_code, 3, `the script's own exit code; stderr: ${job.stderr}`);
    assert.equal(job.stdout, 'from-the-gui-job\n');
    assert.deepEqual(job.artifacts.map((artifact) => artifact.path), ['.brig-job/screenshots/001-typed_it.png', '.brig-job/screenshots/002-final.png']);
    for (const artifact of job.artifacts) {
      const bytes = Buffer.from(await (await fetch(`${daemon.url}/v1/jobs/${id}/artifacts/${artifact.index}`, { headers })).arrayBuffer());
      assert.deepEqual(pngSize(bytes), { width: 1024, height: 768 });
    }
  });

  describe('the VNC stream in a browser', { skip: chromiumSkip }, () => {
    let browser: Browser;
    before(async () => {
      browser = await launchChromium();
    });
    after(async () => {
      await desktop.stream.stop().catch(() => {});
      await browser?.close();
    });

    test("the stream's URL is noVNC through the sandbox's port 6080, and it shows the desktop", async () => {
      await desktop.stream.start();
      const url = new URL(desktop.stream.getUrl());
      assert.equal(url.host, desktop.getHost(6080));
      // The SDK says https (E2B's edge); brig serves http on its port, and the traffic token opens the port.
      url.protocol = 'http:';
      url.searchParams.set('brig_traffic_token', desktop.trafficAccessToken ?? '');
      const page = await browser.newPage();
      try {
        await page.goto(url.toString());
        // noVNC marks the page once its WebSocket to x11vnc is up and the first frame drawn.
        await page.waitForFunction(() => document.documentElement.classList.contains('noVNC_connected'));
        const canvas = await page.$('#noVNC_container canvas');
        const box = await canvas?.boundingBox();
        assert.ok(box && box.width > 100 && box.height > 100, 'the desktop is drawn');
        if (process.env.BRIG_SCREENSHOTS) await page.screenshot({ path: `${process.env.BRIG_SCREENSHOTS}/novnc.png` });
      } finally {
        await page.close();
        await desktop.stream.stop();
      }
    });

    test('a stream with requireAuth opens with its key, and not without', async () => {
      await desktop.stream.start({ requireAuth: true });
      const key = desktop.stream.getAuthKey();
      const page = await browser.newPage();
      try {
        const open = async (authKey?: string): Promise<boolean> => {
          const url = new URL(desktop.stream.getUrl({ authKey }));
          url.protocol = 'http:';
          url.searchParams.set('brig_traffic_token', desktop.trafficAccessToken ?? '');
          await page.goto(url.toString());
          // Connected, or asked for the password (noVNC's credentials dialog).
          await page.waitForFunction(() => document.documentElement.classList.contains('noVNC_connected') || document.getElementById('noVNC_credentials_dlg')?.classList.contains('noVNC_open'));
          return page.evaluate(() => document.documentElement.classList.contains('noVNC_connected'));
        };
        assert.equal(await open(), false, 'without the key, noVNC asks for it');
        assert.equal(await open(key), true);
      } finally {
        await page.close();
        await desktop.stream.stop();
      }
    });
  });
});
