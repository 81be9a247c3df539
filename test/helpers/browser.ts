import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/**
 * Debian's Chromium, driven by playwright-core (no browser download: the
 * machine's own, from scripts/setup.sh). Headless, without the background
 * traffic that a closed network refuses, and without Chromium's own sandbox
 * (the tests run as root, where it will not start).
 */
export const CHROMIUM = '/usr/bin/chromium';

export const chromiumSkip: string | false = existsSync(CHROMIUM) ? false : 'Debian\'s chromium is not installed (scripts/setup.sh installs it)';

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
