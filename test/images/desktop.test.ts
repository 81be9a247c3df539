import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { CommandExitError, Sandbox, type CommandResult, type SandboxOpts } from 'e2b';
import { BRIG, tempWorkspace } from '../helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../helpers/daemon.ts';
import { parseDockerfile } from '../../src/images/index.ts';

const API_KEY = 'brig_desktop_key';

/**
 * The built-in desktop template under E2B's @e2b/desktop SDK. That SDK is a
 * thin layer over the e2b one: every call is a shell command run as `user`
 * with DISPLAY=:0 (dist/index.mjs of @e2b/desktop 2.4.0). So these tests send
 * its very command lines through the e2b SDK to a daemon sandbox booted from
 * the template, as Sandbox.create('desktop') from @e2b/desktop would, and
 * check what they do: the start sequence, an application launched and typed
 * into, a screenshot, the VNC stream, a browser.
 */

/**
 * The desktop template, built once per machine (or CI run) into a cached
 * state directory, then given to the daemon's as hard links (layers are only
 * ever read). The build runs every time: when the template is unchanged every
 * step is a cache hit (under a second), and a changed template is rebuilt
 * from the step that changed. The first build takes minutes.
 */
function seedDesktopImage(stateDir: string): void {
  const cached = `${process.env.BRIG_TEST_CACHE ?? '/var/tmp/brig-test-cache'}/desktop-state`;
  mkdirSync(cached, { recursive: true, mode: 0o700 });
  execFileSync(BRIG, ['image', 'build', 'desktop', '--state', cached], { stdio: ['ignore', 'ignore', 'inherit'] });
  execFileSync('cp', ['-al', `${cached}/images`, `${stateDir}/images`]);
  // The copy's own lock: nothing of the cache's is shared but the layers' files.
  rmSync(`${stateDir}/images/lock`, { force: true });
}

/** @e2b/desktop's quoteString: how it passes text to `xdotool type`. */
function quote(text: string): string {
  if (!/[^\w@%+=:,./-]/.test(text)) return text;
  return `'${text.replace(/'/g, `'"'"'`)}'`;
}

/** The width and height a PNG's IHDR chunk gives, after checking the signature. */
function pngSize(bytes: Uint8Array): { width: number; height: number } {
  const buffer = Buffer.from(bytes);
  assert.deepEqual([...buffer.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG signature');
  assert.equal(buffer.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: buffer.readUInt32BE(16), height: buffer.readUInt32BE(20) };
}

test('the desktop template parses: Debian, user `user`, no start command (the SDK starts the desktop itself)', () => {
  const text = readFileSync('src/images/templates/desktop.Dockerfile', 'utf8');
  const parsed = parseDockerfile(text);
  assert.deepEqual(parsed.warnings, []);
  assert.match(text, /^FROM debian:bookworm$/m);
  assert.match(text, /^USER user$/m);
  assert.doesNotMatch(text, /brig\.start|brig\.ready-port/);
  // what it COPYs is the template's own folder, under the build context (the templates directory)
  for (const one of parsed.instructions) if (one.kind === 'COPY' || one.kind === 'ADD') for (const source of one.sources) assert.match(source, /^desktop\//);
});

describe('the desktop template under @e2b/desktop\'s commands', { skip: process.getuid?.() !== 0 ? 'image sandboxes need root' : false }, () => {
  let state: { dir: string; remove: () => void };
  let daemon: RunningDaemon;
  let desktop: Sandbox;
  const opts = (extra: Partial<SandboxOpts> = {}): SandboxOpts => ({ apiKey: API_KEY, apiUrl: daemon.url, sandboxUrl: daemon.url, ...extra }) as SandboxOpts;

  /** A command as @e2b/desktop runs it (the sandbox's default user, `user`, with the create's DISPLAY). */
  const run = (cmd: string): Promise<CommandResult> => desktop.commands.run(cmd, { timeoutMs: 0 });

  /** @e2b/desktop's launch, Xvfb, startxfce4 and stream starts: in the background, no timeout, disconnected. */
  const background = async (cmd: string): Promise<void> => {
    const handle = await desktop.commands.run(cmd, { background: true, timeoutMs: 0 });
    await handle.disconnect();
  };

  /**
   * @e2b/desktop's waitAndVerify: the command again every half second until
   * check says yes (a failing exit counts as no). The SDK gives up after 10 s
   * (60 s for XFCE); here the bound is a count of tries, generous for a
   * loaded machine, so that a slow start is not a failure.
   */
  const waitAndVerify = async (cmd: string, check: (result: CommandResult) => boolean): Promise<CommandResult> => {
    let last: CommandResult | undefined;
    for (let attempt = 0; attempt < 600; attempt++) {
      try {
        last = await run(cmd);
        if (check(last)) return last;
      } catch (error) {
        if (!(error instanceof CommandExitError)) throw error;
        last = error;
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.fail(`${cmd}: never as expected; last: ${JSON.stringify(last)}`);
  };

  before(async () => {
    state = tempWorkspace('brig-desktop-');
    seedDesktopImage(state.dir);
    daemon = await serveDaemon(state.dir, { apiKey: API_KEY });
    // Sandbox.create('desktop') of @e2b/desktop: the template, with DISPLAY set for every command.
    desktop = await Sandbox.create('desktop', opts({ envs: { DISPLAY: ':0' }, timeoutMs: 3_600_000 }));
  });
  after(async () => {
    for (const info of await Sandbox.list(opts()).nextItems().catch(() => [])) await Sandbox.kill(info.sandboxId, opts()).catch(() => false);
    await daemon?.stop();
    state?.remove();
  });

  test('the start sequence: Xvfb answers xdpyinfo, startxfce4 brings up xfce4-session, xfwm4 and xfdesktop; xrandr gives the screen', async () => {
    assert.equal((await run('id -un; echo "$DISPLAY"')).stdout, 'user\n:0\n');
    await background('Xvfb :0 -ac -screen 0 1024x768x24 -retro -dpi 96 -nolisten tcp -nolisten unix');
    await waitAndVerify('xdpyinfo -display :0', (result) => result.exitCode === 0);
    await background('startxfce4');
    await waitAndVerify('pgrep -x xfce4-session >/dev/null && pgrep -x xfwm4 >/dev/null && pgrep -x xfdesktop >/dev/null', (result) => result.exitCode === 0);
    // getScreenSize: the first WxH in xrandr's output
    assert.match((await run('xrandr')).stdout, /^Screen 0: .*current 1024 x 768/m);
    assert.equal(/(\d+x\d+)/.exec((await run('xrandr')).stdout)?.[1], '1024x768');
    // startXfce4's check that the session is not a zombie
    assert.doesNotMatch((await run('ps aux')).stdout, /\[xfce4-session\] <defunct>/);
  });

  test('gtk-launch starts a terminal; text typed with xdotool runs there as a command, whose file appears', async () => {
    await background('gtk-launch xfce4-terminal ');
    // getApplicationWindows, then the window the typing goes to (getCurrentWindowId, getWindowTitle)
    const windows = await waitAndVerify('xdotool search --onlyvisible --class xfce4-terminal', (result) => result.stdout.trim() !== '');
    const focused = (await run('xdotool getwindowfocus')).stdout.trim();
    assert.ok(windows.stdout.trim().split('\n').includes(focused), `the terminal has the focus: ${focused} in ${windows.stdout}`);
    assert.match((await run(`xdotool getwindowname ${focused}`)).stdout, /^Terminal - user@/);
    // write() and press('enter')
    await run(`xdotool type --delay 75 -- ${quote('echo "typed in $TERM" > ~/typed.txt')}`);
    await run('xdotool key Return');
    const typed = await waitAndVerify('cat ~/typed.txt', (result) => result.stdout !== '');
    assert.equal(typed.stdout, 'typed in xterm-256color\n', 'the shell in the terminal expanded $TERM: it ran what was typed');
  });

  test('an editor launched by its desktop file name takes typed text: its title says the document changed', async () => {
    await background('gtk-launch org.xfce.mousepad ');
    const windows = await waitAndVerify('xdotool search --onlyvisible --class mousepad', (result) => result.stdout.trim() !== '');
    const id = windows.stdout.trim().split('\n')[0] as string;
    assert.equal((await run(`xdotool getwindowname ${id}`)).stdout.trim(), 'Untitled 1 - Mousepad');
    await waitAndVerify('xdotool getwindowfocus', (result) => result.stdout.trim() === id);
    await run(`xdotool type --delay 75 -- ${quote('hello from brig')}`);
    // Mousepad marks an unsaved change with a star in the title
    await waitAndVerify(`xdotool getwindowname ${id}`, (result) => result.stdout.trim() === '*Untitled 1 - Mousepad');
  });

  test('the mouse: mousemove --sync lands where asked, clicks and drags are taken', async () => {
    await run('xdotool mousemove --sync 300 200');
    assert.match((await run('xdotool getmouselocation')).stdout, /^x:300 y:200 /);
    for (const cmd of ['xdotool click 1', 'xdotool click --repeat 2 1', 'xdotool click 3', 'xdotool key Escape', 'xdotool click --repeat 2 5', 'xdotool mousedown 1', 'xdotool mousemove --sync 320 220', 'xdotool mouseup 1']) {
      assert.equal((await run(cmd)).exitCode, 0, cmd);
    }
  });

  test('a screenshot (scrot --pointer) is a PNG of the whole screen', async () => {
    const path = '/tmp/screenshot-brig.png';
    await run(`scrot --pointer ${path}`);
    const bytes = await desktop.files.read(path, { format: 'bytes' });
    assert.deepEqual(pngSize(bytes), { width: 1024, height: 768 });
    // a desktop with windows on it, not a blank frame: a blank 1024x768 PNG is a few KiB
    assert.ok(bytes.length > 20_000, `${bytes.length} bytes`);
    await desktop.files.remove(path);
  });

  test('the stream: x11vnc with a stored password, noVNC on 6080 (netstat sees it), vnc.html served, the websocket reaches the VNC server; stop ends x11vnc', async () => {
    // start({ requireAuth: true }): the password file, then x11vnc in the background by itself (-bg)
    await run('mkdir -p ~/.vnc');
    await run('x11vnc -storepasswd brig-secret ~/.vnc/passwd');
    await run('x11vnc -bg -display :0 -forever -wait 50 -shared -rfbport 5900 -usepw 2>/tmp/x11vnc_stderr.log');
    const novnc = await desktop.commands.run('cd /opt/noVNC/utils && ./novnc_proxy --vnc localhost:5900 --listen 6080 --web /opt/noVNC > /tmp/novnc.log 2>&1', { background: true, timeoutMs: 0 });
    try {
      await waitAndVerify('netstat -tuln | grep ":6080 "', (result) => result.stdout.trim() !== '');
      assert.notEqual((await run('pgrep -x x11vnc')).stdout.trim(), '');
      const page = await run('curl -s http://localhost:6080/vnc.html');
      assert.match(page.stdout, /<title>noVNC<\/title>/);
      // What a browser's noVNC does next: a websocket upgrade, answered by the RFB greeting of x11vnc behind it.
      const upgrade = [
        'import socket',
        "s = socket.create_connection(('127.0.0.1', 6080))",
        "s.sendall(b'GET /websockify HTTP/1.1\\r\\nHost: localhost:6080\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\\r\\nSec-WebSocket-Version: 13\\r\\nSec-WebSocket-Protocol: binary\\r\\n\\r\\n')",
        "data = b''",
        "while b'RFB 003.008' not in data:",
        '    chunk = s.recv(4096)',
        '    if not chunk: break',
        '    data += chunk',
        "print(data.split(b'\\r\\n')[0].decode(), b'RFB 003.008' in data)",
      ].join('\n');
      await desktop.files.write('/tmp/upgrade.py', upgrade);
      assert.equal((await run('python3 /tmp/upgrade.py')).stdout, 'HTTP/1.1 101 Switching Protocols True\n');
    } finally {
      // stop(): pkill x11vnc, then the noVNC command's own process
      await run('pkill x11vnc').catch(() => undefined);
      await novnc.kill();
    }
    await waitAndVerify('pgrep -x x11vnc || echo gone', (result) => result.stdout === 'gone\n');
    await waitAndVerify('netstat -tuln | grep ":6080 " || echo closed', (result) => result.stdout === 'closed\n');
  });

  test('xdg-open of a page opens Firefox ESR, which renders it with its own seccomp sandbox over brig\'s', async () => {
    await run('echo "<title>brig page</title><h1>hello</h1>" > /tmp/page.html');
    assert.equal((await run('xdg-mime query default text/html')).stdout, 'firefox-esr.desktop\n');
    // open(): xdg-open in the background, disconnected
    await background('xdg-open /tmp/page.html');
    await waitAndVerify('for w in $(xdotool search --onlyvisible --class firefox-esr); do xdotool getwindowname $w; done', (result) => result.stdout.includes('brig page — Mozilla Firefox'));
    // Firefox's content processes stack their own filter on brig's (2): its sandbox runs, without the user namespace the jail refuses.
    // ([-]: the pattern must not match the shell that runs this line; a process just forked has yet to install its filter)
    await waitAndVerify('for p in $(pgrep -f "[-]contentproc"); do grep Seccomp_filters: /proc/$p/status; done | sort -u', (result) => result.stdout === 'Seccomp_filters:\t2\n');
  });
});
