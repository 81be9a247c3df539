import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
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

describe('@e2b/desktop against brig', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  const state = tempWorkspace('brig-desktop-');
  let daemon: RunningDaemon;
  let desktop: Sandbox;

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
    let windows: string[] = [];
    for (let attempt = 0; attempt < 100 && windows.filter(Boolean).length === 0; attempt++) {
      windows = await desktop.getApplicationWindows('xfce4-terminal').catch(() => []);
      if (windows.filter(Boolean).length === 0) await desktop.wait(200);
    }
    const window = windows.find(Boolean);
    assert.ok(window, 'the terminal has a window');
    assert.match(await desktop.getWindowTitle(window), /Terminal/i);
    // Typed into the terminal, which runs it: the file is the terminal's doing.
    await desktop.leftClick(512, 384);
    await desktop.write('echo typed-by-brig > /tmp/typed.txt');
    await desktop.press('enter');
    let typed = '';
    for (let attempt = 0; attempt < 100 && typed === ''; attempt++) {
      typed = await desktop.files.read('/tmp/typed.txt').catch(() => '');
      if (typed === '') await desktop.wait(100);
    }
    assert.equal(typed, 'typed-by-brig\n');
    assert.deepEqual(pngSize(await desktop.screenshot()), { width: 1024, height: 768 });
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
      } finally {
        await page.close();
      }
    });
  });
});
