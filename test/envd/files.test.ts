import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { gunzipSync, gzipSync } from 'node:zlib';
import { FileNotFoundError, NotEnoughSpaceError, Sandbox } from 'e2b';
import { eventually } from '../helpers/brig.ts';
import { ENVD_MODES, envdSkip, envdWhere, sandboxFor, startTestEnvd, useEnvd, type TestEnvd } from '../helpers/envd.ts';

/**
 * Files through the real e2b SDK, against envd unjailed, inside a brig
 * jail and in a sandbox from an image: the SDK's own calls, then the wire
 * (gzip, error bodies, signed URLs, streaming) with plain HTTP.
 */

const TOKEN = 'test-access-token-0123456789';
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, index) => index));

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A GET with node:http, so the body arrives exactly as sent (fetch would gunzip it). */
function rawGet(url: string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    request(url, { headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
    })
      .on('error', reject)
      .end();
  });
}

async function post(url: string, body: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, { method: 'POST', body: typeof body === 'string' ? body : new Uint8Array(body), headers });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null };
}

/** A multipart body written by hand, for the cases FormData will not produce. */
function multipart(boundary: string, parts: Array<{ disposition: string; body: string | Buffer }>, close = true): Buffer {
  const pieces: Buffer[] = [];
  for (const part of parts) {
    pieces.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${part.disposition}\r\nContent-Type: application/octet-stream\r\n\r\n`), Buffer.from(part.body), Buffer.from('\r\n'));
  }
  if (close) pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(pieces);
}

function vmRssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, 'VmRSS in /proc/<pid>/status');
  return Number(match[1]);
}

async function* zeros(mebibytes: number): AsyncGenerator<Uint8Array> {
  const chunk = new Uint8Array(1 << 20);
  for (let index = 0; index < mebibytes; index++) yield chunk;
}

/** What envd made for the caller belongs to the user it serves (in an image sandbox envd is root, and chowns). */
async function assertOwnedByUser(sandbox: Sandbox, envd: TestEnvd, ...paths: string[]): Promise<void> {
  for (const path of paths) assert.equal((await sandbox.files.getInfo(path)).owner, envd.user, path);
}

/** Entries an upload may leave behind in a directory if it were not atomic. */
function uploadLeftovers(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.startsWith('.brig-upload-'));
}

for (const mode of ENVD_MODES) {
  const where = envdWhere(mode);

  describe(`files through the e2b SDK, envd ${where}`, { skip: envdSkip(mode) }, () => {
    let envd: TestEnvd;
    let sandbox: Sandbox;
    useEnvd(mode, (started) => ({ envd, sandbox } = started));

    test('write one file, then read it as text, bytes, blob and stream', async () => {
      const info = await sandbox.files.write('one/all-bytes.bin', new Uint8Array(ALL_BYTES).buffer);
      assert.equal(info.name, 'all-bytes.bin');
      assert.equal(info.type, 'file');
      assert.match(info.path, /\/one\/all-bytes\.bin$/);
      assert.deepEqual(Buffer.from(await sandbox.files.read('one/all-bytes.bin', { format: 'bytes' })), ALL_BYTES);
      const blob = await sandbox.files.read('one/all-bytes.bin', { format: 'blob' });
      assert.deepEqual(Buffer.from(await blob.arrayBuffer()), ALL_BYTES);
      const chunks: Buffer[] = [];
      for await (const chunk of await sandbox.files.read('one/all-bytes.bin', { format: 'stream' })) chunks.push(Buffer.from(chunk));
      assert.deepEqual(Buffer.concat(chunks), ALL_BYTES);
      await sandbox.files.write('one/text.txt', 'héllo wörld\n');
      assert.equal(await sandbox.files.read('one/text.txt'), 'héllo wörld\n');
    });

    test('write many files at once: each part lands at its own path', async () => {
      const written = await sandbox.files.write([
        { path: 'many/a.txt', data: 'A' },
        { path: 'many/deep/b.txt', data: 'B' },
        { path: `${envd.workspace}/many-c.txt`, data: 'C' },
        { path: 'many/ünïcode name.txt', data: 'D' },
      ]);
      assert.deepEqual(
        written.map((file) => file.name),
        ['a.txt', 'b.txt', 'many-c.txt', 'ünïcode name.txt'],
      );
      assert.equal(await sandbox.files.read('many/deep/b.txt'), 'B');
      assert.equal(readFileSync(`${envd.workspace}/many-c.txt`, 'utf8'), 'C');
      assert.equal(await sandbox.files.read('many/ünïcode name.txt'), 'D');
      await assertOwnedByUser(sandbox, envd, 'many', 'many/deep', 'many/deep/b.txt', `${envd.workspace}/many-c.txt`);
    });

    test('an empty file reads as empty in every format, with Content-Length: 0', async () => {
      await sandbox.files.write('empty.txt', '');
      assert.equal(await sandbox.files.read('empty.txt'), '');
      assert.equal((await sandbox.files.read('empty.txt', { format: 'bytes' })).length, 0);
      const raw = await rawGet(`${envd.url}/files?path=empty.txt`, { 'accept-encoding': 'gzip' });
      assert.equal(raw.status, 200);
      assert.equal(raw.headers['content-length'], '0');
    });

    test('a streamed upload (octet-stream) and a rewrite that keeps the mode', async () => {
      const target = `${envd.workspace}/kept-mode.txt`;
      writeFileSync(target, 'old');
      chmodSync(target, 0o600);
      envd.own(target);
      const stream = new Blob(['new ', 'content']).stream();
      await sandbox.files.write(target, stream);
      assert.equal(readFileSync(target, 'utf8'), 'new content');
      assert.equal(lstatSync(target).mode & 0o777, 0o600);
      await assertOwnedByUser(sandbox, envd, target);
      assert.deepEqual(uploadLeftovers(envd.workspace), []);
    });

    test('list: depth 1 by default, deeper entries in the same flat list', async () => {
      await sandbox.files.write([
        { path: 'tree/a.txt', data: 'a' },
        { path: 'tree/sub/b.txt', data: 'b' },
        { path: 'tree/sub/deeper/c.txt', data: 'c' },
      ]);
      const names = async (depth?: number): Promise<string[]> => (await sandbox.files.list('tree', depth ? { depth } : undefined)).map((entry) => entry.name);
      assert.deepEqual(await names(), ['a.txt', 'sub']);
      assert.deepEqual(await names(2), ['a.txt', 'sub', 'b.txt', 'deeper']);
      assert.deepEqual(await names(3), ['a.txt', 'sub', 'b.txt', 'deeper', 'c.txt']);
      const [file, dir] = await sandbox.files.list('tree');
      assert.equal(file?.type, 'file');
      assert.equal(dir?.type, 'dir');
      assert.match(dir?.path ?? '', /\/tree\/sub$/);
    });

    test('exists and getInfo, with the fields E2B fills', async () => {
      const path = `${envd.workspace}/info.txt`;
      await sandbox.files.write(path, '12345');
      chmodSync(path, 0o640);
      assert.equal(await sandbox.files.exists(path), true);
      assert.equal(await sandbox.files.exists('no-such-file'), false);
      const host = lstatSync(path);
      const info = await sandbox.files.getInfo(path);
      assert.equal(info.name, 'info.txt');
      assert.equal(info.type, 'file');
      assert.equal(info.path, path);
      assert.equal(info.size, 5);
      assert.equal(info.mode, 0o640);
      assert.equal(info.permissions, '-rw-r-----');
      assert.equal(info.owner, envd.user, 'what the SDK writes belongs to the user envd serves');
      assert.equal(typeof info.group, 'string');
      assert.equal(info.modifiedTime?.getTime(), Math.floor(host.mtimeMs));
      assert.equal(info.symlinkTarget, undefined);

      const dir = await sandbox.files.getInfo(envd.workspace);
      assert.equal(dir.type, 'dir');
      assert.match(dir.permissions, /^d[rwx-]{9}$/);

      symlinkSync('info.txt', `${envd.workspace}/info-link`);
      const link = await sandbox.files.getInfo(`${envd.workspace}/info-link`);
      assert.equal(link.type, 'symlink');
      assert.equal(link.permissions, 'lrwxrwxrwx');
      assert.equal(link.symlinkTarget, path);
      assert.equal(link.mode, 0o640, "a link reports its target's permission bits, as E2B does");
    });

    test('rename moves a file and creates the destination directories', async () => {
      await sandbox.files.write('to-move.txt', 'moving');
      const entry = await sandbox.files.rename('to-move.txt', 'moved/here/now.txt');
      assert.equal(entry.name, 'now.txt');
      assert.equal(entry.type, 'file');
      assert.equal(await sandbox.files.read('moved/here/now.txt'), 'moving');
      assert.equal(await sandbox.files.exists('to-move.txt'), false);
      await assert.rejects(sandbox.files.rename('not-there.txt', 'x.txt'), FileNotFoundError);
    });

    test('rename across filesystems (the jail home is a tmpfs apart from the workspace)', async () => {
      await sandbox.files.write('cross/a.txt', 'across');
      await sandbox.files.rename('cross', `${envd.workspace}/crossed`);
      assert.equal(readFileSync(`${envd.workspace}/crossed/a.txt`, 'utf8'), 'across');
      assert.equal(await sandbox.files.exists('cross'), false);
      // A move keeps owners, copied or not: the user's files stay the user's (envd copies them as root in an image sandbox).
      for (const path of ['crossed', 'crossed/a.txt']) assert.equal((await sandbox.files.getInfo(`${envd.workspace}/${path}`)).owner, envd.user, path);
    });

    test('remove a file, a whole tree, and (as E2B) a path already gone', async () => {
      await sandbox.files.write([
        { path: 'doomed/a.txt', data: 'a' },
        { path: 'doomed/sub/b.txt', data: 'b' },
      ]);
      await sandbox.files.remove('doomed/a.txt');
      assert.equal(await sandbox.files.exists('doomed/a.txt'), false);
      await sandbox.files.remove('doomed');
      assert.equal(await sandbox.files.exists('doomed'), false);
      await sandbox.files.remove('doomed');
    });

    test('makeDir creates parents, and answers false when the directory exists', async () => {
      assert.equal(await sandbox.files.makeDir('made/with/parents'), true);
      assert.equal((await sandbox.files.getInfo('made/with/parents')).type, 'dir');
      assert.equal(await sandbox.files.makeDir('made/with/parents'), false);
      await assertOwnedByUser(sandbox, envd, 'made', 'made/with', 'made/with/parents');
      await sandbox.files.write('made/file', 'x');
      await assert.rejects(sandbox.files.makeDir('made/file'), /not a directory/);
    });

    test('a missing path is FileNotFoundError for read, getInfo and list', async () => {
      await assert.rejects(sandbox.files.read('missing.txt'), FileNotFoundError);
      await assert.rejects(sandbox.files.getInfo('missing.txt'), FileNotFoundError);
      await assert.rejects(sandbox.files.list('missing-dir'), FileNotFoundError);
    });

    test('gzip both ways: the SDK option, and plain HTTP with Accept-Encoding / Content-Encoding', async () => {
      const text = 'compress me '.repeat(1000);
      await sandbox.files.write('gz/sdk.txt', text, { gzip: true });
      assert.equal(await sandbox.files.read('gz/sdk.txt', { gzip: true }), text);

      const upload = await post(`${envd.url}/files?path=gz/raw.txt`, gzipSync(text), { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
      assert.equal(upload.status, 200);
      const raw = await rawGet(`${envd.url}/files?path=gz/raw.txt`, { 'accept-encoding': 'gzip' });
      assert.equal(raw.status, 200);
      assert.equal(raw.headers['content-encoding'], 'gzip');
      assert.ok(raw.body.length < text.length / 10, 'the body is compressed');
      assert.equal(gunzipSync(raw.body).toString(), text);
      await assertOwnedByUser(sandbox, envd, 'gz', 'gz/sdk.txt', 'gz/raw.txt');

      const identity = await rawGet(`${envd.url}/files?path=gz/raw.txt`);
      assert.equal(identity.headers['content-encoding'], undefined);
      assert.equal(identity.headers['content-length'], String(text.length));
      assert.equal(identity.body.toString(), text);

      // fetch() and browsers offer a list by default: envd's callers are local, so it sends the file as it is.
      const offered = await rawGet(`${envd.url}/files?path=gz/raw.txt`, { 'accept-encoding': 'gzip, deflate, br' });
      assert.equal(offered.headers['content-encoding'], undefined);
      assert.equal(offered.body.toString(), text);

      const refused = await rawGet(`${envd.url}/files?path=gz/raw.txt`, { 'accept-encoding': 'br, identity;q=0' });
      assert.equal(refused.status, 406);

      const corrupt = await post(`${envd.url}/files?path=gz/corrupt.txt`, Buffer.from('not gzip at all'), { 'content-type': 'application/octet-stream', 'content-encoding': 'gzip' });
      assert.equal(corrupt.status, 400);
      assert.equal(await sandbox.files.exists('gz/corrupt.txt'), false);
    });

    test('errors on the wire: a directory, a missing file, a NUL byte, malformed multipart', async () => {
      const directory = await rawGet(`${envd.url}/files?path=${encodeURIComponent(envd.workspace)}`);
      assert.equal(directory.status, 400);
      assert.deepEqual(Object.keys(JSON.parse(directory.body.toString()) as object).sort(), ['code', 'message']);
      assert.equal((JSON.parse(directory.body.toString()) as { code: number }).code, 400);

      const missing = await rawGet(`${envd.url}/files?path=nope.txt`);
      assert.equal(missing.status, 404);
      assert.match((JSON.parse(missing.body.toString()) as { message: string }).message, /does not exist/);

      assert.equal((await rawGet(`${envd.url}/files?path=a%00b`)).status, 400);
      assert.equal((await post(`${envd.url}/files?path=a%00b`, 'x', { 'content-type': 'application/octet-stream' })).status, 400);
      assert.equal((await rawGet(`${envd.url}/files?path=/dev/null`)).status, 400, 'only regular files are served');

      const form = (body: Buffer, boundary = 'XyZ'): Promise<{ status: number; json: unknown }> =>
        post(`${envd.url}/files`, body, { 'content-type': `multipart/form-data; boundary=${boundary}` });
      const file = { disposition: 'form-data; name="file"; filename="mp/ok.txt"', body: 'fine' };
      assert.equal((await post(`${envd.url}/files`, multipart('XyZ', [file]), { 'content-type': 'multipart/form-data' })).status, 400, 'no boundary');
      assert.equal((await form(Buffer.from('just some text, no boundary anywhere'))).status, 400, 'boundary never appears');
      assert.equal((await form(multipart('XyZ', [file], false))).status, 400, 'no closing boundary');
      assert.equal((await form(Buffer.from('--XyZ\r\nContent-Disposition form-data\r\n\r\nbody\r\n--XyZ--\r\n'))).status, 400, 'a header line without a colon');
      assert.equal((await form(multipart('XyZ', [{ disposition: 'form-data; name="file"', body: 'x' }]))).status, 400, 'no filename and no path');
      const twice = await form(multipart('XyZ', [file, file]));
      assert.equal(twice.status, 400, 'two parts to one path');
      assert.equal(await sandbox.files.read('mp/ok.txt'), 'fine', 'the first of them was written');
      assert.equal((await post(`${envd.url}/files?path=x.txt`, 'x', { 'content-type': 'text/plain' })).status, 400, 'unsupported content type');
      assert.equal((await post(`${envd.url}/files?path=x.txt`, 'x', { 'content-type': 'application/octet-stream', 'x-metadata-owner': 'me' })).status, 501, 'metadata is refused');
      assert.equal(await sandbox.files.exists('x.txt'), false);
    });

    test('multipart details: other fields skipped, transport padding, filename*, a boundary split across chunks', async () => {
      const boundary = 'b0undary-with-length-' + 'x'.repeat(40);
      const parts = [
        { disposition: 'form-data; name="note"', body: 'ignored' },
        { disposition: 'form-data; name="file"; filename="ascii.txt"; filename*=UTF-8\'\'mp%2F%C3%A9t%C3%A9.txt', body: 'summer' },
        { disposition: 'form-data; name="file"; filename="mp/quoted \\"name\\".txt"', body: '\r\n--b0undary-almost\r\n' },
      ];
      const body = multipart(boundary, parts).toString('latin1').replace(`--${boundary}\r\n`, `--${boundary}  \r\n`);
      const bytes = Buffer.from(body, 'latin1');
      async function* drip(): AsyncGenerator<Uint8Array> {
        for (let offset = 0; offset < bytes.length; offset += 7) yield bytes.subarray(offset, offset + 7);
      }
      const response = await fetch(`${envd.url}/files`, { method: 'POST', body: drip() as unknown as BodyInit, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` }, duplex: 'half' } as RequestInit);
      assert.equal(response.status, 200, await response.clone().text());
      const written = (await response.json()) as Array<{ name: string }>;
      assert.deepEqual(
        written.map((file) => file.name),
        ['été.txt', 'quoted "name".txt'],
      );
      assert.equal(await sandbox.files.read('mp/été.txt'), 'summer');
      assert.equal(await sandbox.files.read('mp/quoted "name".txt'), '\r\n--b0undary-almost\r\n');
      await assertOwnedByUser(sandbox, envd, 'mp', 'mp/été.txt');
    });

    test('an upload cut off midway leaves neither the file nor a temporary file', async () => {
      mkdirSync(`${envd.workspace}/cut`, { recursive: true });
      // Made on the host: in an image sandbox it must be the sandbox's user's, or the upload fails at once and proves nothing.
      envd.own(`${envd.workspace}/cut`);
      const abort = new AbortController();
      async function* body(): AsyncGenerator<Uint8Array> {
        yield new Uint8Array(1 << 20);
        yield new Uint8Array(1 << 20);
        abort.abort();
      }
      await assert.rejects(
        fetch(`${envd.url}/files?path=${encodeURIComponent(`${envd.workspace}/cut/file.bin`)}`, {
          method: 'POST',
          body: body() as unknown as BodyInit,
          headers: { 'content-type': 'application/octet-stream' },
          duplex: 'half',
          signal: abort.signal,
        } as RequestInit),
      );
      // envd notices the cut on its own time: wait until the temporary file is gone.
      const cutDir = `${envd.workspace}/cut`;
      assert.ok(await eventually(() => readdirSync(cutDir).length === 0), `left behind: ${readdirSync(cutDir).join(', ')}`);
      assert.equal(existsSync(`${envd.workspace}/cut/file.bin`), false);
    });

    if (mode !== 'unjailed') {
      const vmTmp = mode === 'vm' && "the VM's /tmp is the host view's tmpfs over virtiofs, and the guest's page cache holds a copy too: filling it meets the VM's host memory limit (ENOMEM) before its size (ENOSPC), after minutes on TCG (docs/tiers.md)";
      test('a full disk answers 507 (NotEnoughSpaceError) and leaves nothing behind (the jail /tmp is a 1 GiB tmpfs)', { skip: vmTmp }, async () => {
        let mebibytes = 0;
        const stream = new ReadableStream<Uint8Array>({
          pull: (controller) => (mebibytes++ < 1100 ? controller.enqueue(new Uint8Array(1 << 20)) : controller.close()),
        });
        await assert.rejects(sandbox.files.write('/tmp/too-big.bin', stream), (error: Error) => {
          assert.ok(error instanceof NotEnoughSpaceError, `${error.name}: ${error.message}`);
          assert.match(error.message, /ENOSPC/);
          return true;
        });
        const left = (await sandbox.files.list('/tmp')).map((entry) => entry.name);
        assert.ok(!left.includes('too-big.bin') && !left.some((name) => name.startsWith('.brig-upload-')), left.join(', '));
      });
    }
  });

  describe(`signed URLs and the access token, envd ${where}`, { skip: envdSkip(mode) }, () => {
    let envd: TestEnvd;
    let sandbox: Sandbox;
    before(async () => {
      envd = await startTestEnvd({ mode, accessToken: TOKEN });
      // What Sandbox.create returns when the control plane hands out a token: the SDK signs URLs only then.
      const Constructor = Sandbox as unknown as new (options: Record<string, unknown>) => Sandbox;
      sandbox = new Constructor({ sandboxId: 'signed', envdVersion: '0.6.3', envdAccessToken: TOKEN, sandboxUrl: envd.url, debug: true, apiKey: 'k' });
    });
    after(() => envd.close());

    test('the SDK works with the token', async () => {
      await sandbox.files.write('secret.txt', 'signed content');
      assert.equal(await sandbox.files.read('secret.txt'), 'signed content');
    });

    test('downloadUrl and uploadUrl work with plain fetch and no token', async () => {
      await sandbox.files.write('secret.txt', 'signed content');
      const download = await fetch(await sandbox.downloadUrl('secret.txt'));
      assert.equal(download.status, 200);
      assert.equal(await download.text(), 'signed content');

      const expiring = await fetch(await sandbox.downloadUrl('secret.txt', { useSignatureExpiration: 600 }));
      assert.equal(await expiring.text(), 'signed content');

      const form = new FormData();
      form.append('file', new Blob(['uploaded by URL']), 'by-url.txt');
      const upload = await fetch(await sandbox.uploadUrl('by-url.txt'), { method: 'POST', body: form });
      assert.equal(upload.status, 200, await upload.clone().text());
      assert.equal(await sandbox.files.read('by-url.txt'), 'uploaded by URL');
      await assertOwnedByUser(sandbox, envd, 'by-url.txt');

      const asUser = await fetch(await sandbox.downloadUrl('secret.txt', { user: 'user' }));
      assert.equal(await asUser.text(), 'signed content', 'a named user is part of the signature');
    });

    test('a tampered, misused or expired signature gets 401', async () => {
      const url = new URL(await sandbox.downloadUrl('secret.txt'));
      const signature = url.searchParams.get('signature') ?? '';
      const expect401 = async (target: URL | string, init?: RequestInit): Promise<void> => {
        const response = await fetch(target, init);
        assert.equal(response.status, 401, String(target));
        const body = (await response.json()) as { code: number; message: string };
        assert.equal(body.code, 401);
        assert.ok(body.message.length > 0);
      };

      const tampered = new URL(url);
      tampered.searchParams.set('signature', signature.slice(0, -1) + (signature.endsWith('A') ? 'B' : 'A'));
      await expect401(tampered);
      const otherPath = new URL(url);
      otherPath.searchParams.set('path', 'by-url.txt');
      await expect401(otherPath);
      const otherUser = new URL(url);
      otherUser.searchParams.set('username', 'root');
      await expect401(otherUser);
      const unsigned = new URL(url);
      unsigned.searchParams.delete('signature');
      await expect401(unsigned);
      await expect401(url, { headers: { 'x-access-token': 'wrong' } });

      const readUrl = await sandbox.downloadUrl('by-url.txt');
      await expect401(readUrl, { method: 'POST', body: 'x', headers: { 'content-type': 'application/octet-stream' } });

      await expect401(await sandbox.downloadUrl('secret.txt', { useSignatureExpiration: -60 }));
      const extended = new URL(await sandbox.downloadUrl('secret.txt', { useSignatureExpiration: 60 }));
      extended.searchParams.set('signature_expiration', String(Number(extended.searchParams.get('signature_expiration')) + 3600));
      await expect401(extended);
    });

    test('RPCs without the token are unauthenticated', async () => {
      const response = await fetch(`${envd.url}/filesystem.Filesystem/Stat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'connect-protocol-version': '1' },
        body: JSON.stringify({ path: '/' }),
      });
      assert.equal(response.status, 401);
      assert.equal(((await response.json()) as { code: string }).code, 'unauthenticated');
      const tokenless = await sandboxFor(envd);
      await assert.rejects(tokenless.files.list('/'));
      await assert.rejects(tokenless.files.read('secret.txt'), /401|unauth|access token/i);
    });
  });
}

// envd's RSS is read from the host's /proc, wherever it runs.
for (const mode of ENVD_MODES) {
  describe(`envd memory while streaming large files, envd ${envdWhere(mode)}`, { skip: envdSkip(mode) }, () => {
    let envd: TestEnvd;
    let sandbox: Sandbox;
    useEnvd(mode, (started) => ({ envd, sandbox } = started));

    const LARGE_MIB = 200;
    // Chunks in flight, garbage not yet collected and the allocator's slack (about 45 MiB
    // measured): buffering a body would add all of its 200 MiB.
    const ALLOWED_GROWTH_KIB = (LARGE_MIB / 2) * 1024;

    test(`a ${LARGE_MIB} MiB octet-stream upload, a ${LARGE_MIB} MiB multipart upload and a download do not grow envd's RSS by their size`, { skip: (mode === 'gvisor' || mode === 'vm') && "envd's memory is the Sentry's or the guest's there: the host has no process of its own to read" }, async () => {
      const pid = envd.envdPid();
      await sandbox.files.write('warm-up.txt', 'x'.repeat(1 << 20));
      await sandbox.files.read('warm-up.txt');
      const before = vmRssKiB(pid);

      const raw = await fetch(`${envd.url}/files?path=large/raw.bin`, {
        method: 'POST',
        body: zeros(LARGE_MIB) as unknown as BodyInit,
        headers: { 'content-type': 'application/octet-stream' },
        duplex: 'half',
      } as RequestInit);
      assert.equal(raw.status, 200, await raw.clone().text());
      const afterRaw = vmRssKiB(pid);

      const boundary = 'large-upload-boundary';
      async function* form(): AsyncGenerator<Uint8Array> {
        yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="large/form.bin"\r\n\r\n`);
        yield* zeros(LARGE_MIB);
        yield Buffer.from(`\r\n--${boundary}--\r\n`);
      }
      const multi = await fetch(`${envd.url}/files`, {
        method: 'POST',
        body: form() as unknown as BodyInit,
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        duplex: 'half',
      } as RequestInit);
      assert.equal(multi.status, 200, await multi.clone().text());
      const afterForm = vmRssKiB(pid);

      let downloaded = 0;
      for await (const chunk of await sandbox.files.read('large/form.bin', { format: 'stream' })) downloaded += chunk.length;
      const afterDownload = vmRssKiB(pid);

      assert.equal((await sandbox.files.getInfo('large/raw.bin')).size, LARGE_MIB << 20);
      assert.equal((await sandbox.files.getInfo('large/form.bin')).size, LARGE_MIB << 20);
      assert.equal(downloaded, LARGE_MIB << 20);
      for (const [step, rss] of [['octet-stream', afterRaw], ['multipart', afterForm], ['download', afterDownload]] as const) {
        assert.ok(rss - before < ALLOWED_GROWTH_KIB, `${step}: RSS grew from ${before} KiB to ${rss} KiB`);
      }
    });
  });
}
