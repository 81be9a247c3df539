import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildImage } from '../../src/images/build.ts';
import { hostDebianMirror, mirrorHosts, mmdebstrapArgs, parseDebianRef } from '../../src/images/debian.ts';
import { openImageStore } from '../../src/images/index.ts';

function scratch(t: { after: (fn: () => void) => void }): string {
  const base = mkdtempSync(join(tmpdir(), 'brig-debian-'));
  t.after(() => {
    execFileSync('chmod', ['-R', 'u+rwx', base]);
    rmSync(base, { recursive: true, force: true });
  });
  return base;
}

test('parseDebianRef: suites, version numbers, -slim, latest; anything else is not Debian', () => {
  assert.deepEqual(parseDebianRef('debian:bookworm'), { suite: 'bookworm', slim: false });
  assert.deepEqual(parseDebianRef('debian:bookworm-slim'), { suite: 'bookworm', slim: true });
  assert.deepEqual(parseDebianRef('debian:12-slim'), { suite: 'bookworm', slim: true });
  assert.deepEqual(parseDebianRef('debian:13'), { suite: 'trixie', slim: false });
  assert.deepEqual(parseDebianRef('debian'), { suite: 'stable', slim: false });
  assert.deepEqual(parseDebianRef('debian:latest'), { suite: 'stable', slim: false });
  assert.deepEqual(parseDebianRef('docker.io/library/debian:trixie'), { suite: 'trixie', slim: false });
  assert.equal(parseDebianRef('ubuntu:22.04'), undefined);
  assert.equal(parseDebianRef('debian:12.5'), undefined);
  assert.equal(parseDebianRef('mydebian:bookworm'), undefined);
  assert.equal(parseDebianRef('debian:bookworm;rm'), undefined);
});

test('hostDebianMirror reads deb822 .sources and one-line .list files, skipping disabled and non-Debian entries', (t) => {
  const apt = scratch(t);
  mkdirSync(join(apt, 'sources.list.d'));
  assert.equal(hostDebianMirror(apt) instanceof Promise, true);
  writeFileSync(join(apt, 'sources.list'), '# deb http://commented.example/debian bookworm main\ndeb [arch=amd64] https://packages.example.com/apt stable main\n');
  writeFileSync(join(apt, 'sources.list.d', 'a.sources'), 'Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\nEnabled: no\n\nTypes: deb-src\nURIs: http://src.example/debian\n');
  writeFileSync(join(apt, 'sources.list.d', 'b.sources'), 'Types: deb\nURIs: http://mirror.example.org/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example.org/debian-security\n');
  return hostDebianMirror(apt).then((mirror) => assert.equal(mirror, 'http://mirror.example.org/debian'));
});

test('hostDebianMirror is undefined when no source is a Debian archive', async (t) => {
  const apt = scratch(t);
  writeFileSync(join(apt, 'sources.list'), 'deb http://archive.ubuntu.com/ubuntu jammy main\n');
  assert.equal(await hostDebianMirror(apt), undefined);
  assert.equal(await hostDebianMirror(join(apt, 'missing')), undefined);
});

test('mmdebstrap arguments: minbase, tar on stdout, the mirror last; -slim adds the dpkg path filters', () => {
  const full = mmdebstrapArgs({ suite: 'bookworm', slim: false }, 'http://deb.debian.org/debian');
  assert.ok(full.includes('--variant=minbase'));
  assert.deepEqual(full.slice(-3), ['bookworm', '-', 'http://deb.debian.org/debian']);
  assert.ok(!full.some((arg) => arg.startsWith('--dpkgopt=path-exclude')));
  const slim = mmdebstrapArgs({ suite: 'trixie', slim: true }, undefined);
  assert.deepEqual(slim.slice(-2), ['trixie', '-']);
  assert.ok(slim.includes('--dpkgopt=path-exclude=/usr/share/man/*'));
  assert.ok(slim.includes('--dpkgopt=path-include=/usr/share/doc/*/copyright'));
});

test('FROM debian:bookworm-slim bootstraps with mmdebstrap into a layer; a rebuild is a cache hit', async (t) => {
  const base = scratch(t);
  const context = join(base, 'context');
  mkdirSync(context);
  const store = await openImageStore(join(base, 'store'));
  let log = '';
  const first = await buildImage({ store, dockerfile: 'FROM debian:bookworm-slim\nENV A=1\n', context, tag: 'slim', output: (chunk) => (log += chunk.toString()) });
  assert.equal(first.image.layers.length, 1);
  assert.equal(first.steps[0]?.cached, false);
  assert.match(log, /bootstrapping Debian bookworm \(slim\) with mmdebstrap/);
  assert.match(log, /I: success/, 'mmdebstrap\'s progress is shown');
  const root = store.layerPath(first.image.layers[0] as string);
  assert.match(readFileSync(join(root, 'etc/debian_version'), 'utf8'), /^12\./);
  assert.ok(existsSync(join(root, 'usr/bin/apt-get')));
  assert.ok(statSync(join(root, 'usr/sbin/policy-rc.d')).mode & 0o100, 'services never start in a build');
  // slim: docs but copyright, man pages and locales left out, and kept out of later installs
  assert.ok(existsSync(join(root, 'usr/share/doc/bash/copyright')));
  assert.deepEqual(readdirSync(join(root, 'usr/share/doc/bash')), ['copyright']);
  assert.deepEqual(readdirSync(join(root, 'usr/share/man')).filter((name) => name !== 'man1'), []);
  assert.match(readFileSync(join(root, 'etc/dpkg/dpkg.cfg.d', readdirSync(join(root, 'etc/dpkg/dpkg.cfg.d'))[0] as string), 'utf8'), /path-exclude=\/usr\/share\/man/);
  assert.deepEqual(first.image.config.env, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'A=1']);
  assert.deepEqual(readdirSync(join(store.dir, 'tmp')), []);

  let again = '';
  const second = await buildImage({ store, dockerfile: 'FROM debian:bookworm-slim\nENV A=2\n', context, tag: 'slim', output: (chunk) => (again += chunk.toString()) });
  assert.equal(second.steps[0]?.cached, true);
  assert.deepEqual(second.image.layers, first.image.layers);
  assert.doesNotMatch(again, /mmdebstrap/);
});

test('Ctrl-C during the bootstrap stops mmdebstrap: no layer, no cache entry, an empty tmp, and mmdebstrap\'s own tempdir removed', async (t) => {
  const base = scratch(t);
  const context = join(base, 'context');
  mkdirSync(context);
  const store = await openImageStore(join(base, 'store'));
  const controller = new AbortController();
  let log = '';
  const output = (chunk: string | Buffer): void => {
    log += chunk.toString();
    // once mmdebstrap is downloading: its tempdir exists and holds a partial chroot
    if (/I: downloading packages/.test(log)) controller.abort();
  };
  await assert.rejects(buildImage({ store, dockerfile: 'FROM debian:bookworm-slim\n', context, tag: 'slim', output, signal: controller.signal }), /interrupted at step 1/);
  const tempdir = /I: using (\S+) as tempdir/.exec(log)?.[1];
  assert.ok(tempdir !== undefined, log);
  assert.ok(!existsSync(tempdir), `mmdebstrap left ${tempdir}`);
  assert.deepEqual(readdirSync(join(store.dir, 'layers')), []);
  assert.deepEqual(readdirSync(join(store.dir, 'tmp')), []);
  assert.ok(!existsSync(join(store.dir, 'build-cache.json')));
});

test('mirrorHosts: Debian\'s own mirrors and every host the apt sources name', async (t) => {
  const apt = scratch(t);
  mkdirSync(join(apt, 'sources.list.d'));
  writeFileSync(join(apt, 'sources.list'), 'deb [arch=amd64] https://packages.example.com/apt stable main\n');
  writeFileSync(join(apt, 'sources.list.d', 'b.sources'), 'Types: deb\nURIs: http://mirror.example.org/debian/\nSuites: bookworm\n');
  assert.deepEqual((await mirrorHosts(apt)).sort(), ['deb.debian.org', 'mirror.example.org', 'packages.example.com', 'security.debian.org']);
});
