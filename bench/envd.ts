import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Sandbox, type SandboxOpts } from 'e2b';
import { encodeEnvelope, EnvelopeReader, ENVELOPE_FLAG } from '../src/protocol/index.ts';
import { percentile } from './measure.ts';
import { startTestEnvd, type TestEnvd } from '../test/helpers/envd.ts';

/**
 * Issue 3's benchmark, envd unjailed (the protocol's own cost; a jail adds
 * nothing per call once it runs): the SDK's commands.run("true") round trip,
 * stdout throughput of a command writing 1 GiB, 100 MiB file write and read
 * through the SDK, envd's RSS idle and while streaming. Peers in the same
 * run: Node spawning `true` itself, and a plain pipe.
 */
export async function benchEnvd(roundTrips: number): Promise<string> {
  const envd = await startTestEnvd({ jailed: false });
  try {
    const sandbox = await Sandbox.create({ debug: true, sandboxUrl: envd.url, apiKey: 'bench' } as SandboxOpts);
    const idleRss = rssMiB(envd);
    for (let warm = 0; warm < 20; warm++) await sandbox.commands.run('true');
    const sdk = await timeRuns(roundTrips, () => sandbox.commands.run('true').then(() => undefined));
    const bare = await timeRuns(roundTrips, () => spawnTrue());
    const stdout = await streamStdout(envd, 1024);
    const pipe = pipeThroughput(1024);
    const file = new Uint8Array(100 * 1024 * 1024).fill(7);
    const write = await timeOnce(() => sandbox.files.write('/tmp/brig-bench-100m', file.buffer).then(() => undefined));
    const read = await timeOnce(async () => {
      const bytes = await sandbox.files.read('/tmp/brig-bench-100m', { format: 'bytes' });
      if (bytes.length !== file.length) throw new Error(`read ${bytes.length} bytes, wrote ${file.length}`);
    });
    const rawWrite = await timeOnce(() => rawHttp(envd, 'POST', '/tmp/brig-bench-100m', Buffer.from(file.buffer)).then(() => undefined));
    const rawRead = await timeOnce(async () => {
      const bytes = await rawHttp(envd, 'GET', '/tmp/brig-bench-100m');
      if (bytes !== file.length) throw new Error(`read ${bytes} bytes over raw HTTP`);
    });
    await sandbox.files.remove('/tmp/brig-bench-100m');
    const mbps = (bytes: number, ms: number): string => ((bytes / 1e6) / (ms / 1000)).toFixed(0);
    const rows = [
      `| commands.run("true") round trip, e2b SDK | p50 ${sdk.p50.toFixed(2)} ms, p95 ${sdk.p95.toFixed(2)} ms (${roundTrips} runs) | ≤ 5 ms p50: ${sdk.p50 <= 5 ? 'met' : 'NOT met'} |`,
      `| peer: Node spawning \`true\` itself | p50 ${bare.p50.toFixed(2)} ms, p95 ${bare.p95.toFixed(2)} ms | the floor for starting a process |`,
      `| stdout of a command writing 1 GiB, through envd | ${mbps(stdout.bytes, stdout.ms)} MB/s | ≥ 300 MB/s: ${stdout.bytes / 1e6 / (stdout.ms / 1000) >= 300 ? 'met' : 'NOT met'} |`,
      `| peer: the same 1 GiB through a plain pipe | ${mbps(pipe.bytes, pipe.ms)} MB/s | the ceiling |`,
      `| write 100 MiB through the SDK | ${mbps(file.length, write)} MB/s | ≥ 300 MB/s: ${file.length / 1e6 / (write / 1000) >= 300 ? 'met' : 'NOT met'} |`,
      `| read 100 MiB through the SDK | ${mbps(file.length, read)} MB/s | ≥ 300 MB/s: ${file.length / 1e6 / (read / 1000) >= 300 ? 'met' : 'NOT met'} |`,
      `| peer: write 100 MiB with plain HTTP (Node http, no SDK) | ${mbps(file.length, rawWrite)} MB/s | envd's own capacity |`,
      `| peer: read 100 MiB with plain HTTP (Node http, no SDK) | ${mbps(file.length, rawRead)} MB/s | envd's own capacity |`,
      `| envd RSS idle | ${idleRss.toFixed(1)} MiB | as small as Node allows (\`node -e 0\`: ${nodeFloorRssMiB().toFixed(1)} MiB) |`,
      `| envd peak RSS while streaming 1 GiB | ${stdout.peakRssMiB.toFixed(1)} MiB | must not grow with the output |`,
    ];
    return ['### envd (unjailed, through the e2b SDK and raw Connect)', '', '| what | measured | target |', '| --- | --- | --- |', ...rows].join('\n');
  } finally {
    await envd.close();
  }
}

async function timeRuns(count: number, run: () => Promise<void>): Promise<{ p50: number; p95: number }> {
  const times: number[] = [];
  for (let index = 0; index < count; index++) times.push(await timeOnce(run));
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 0.5), p95: percentile(times, 0.95) };
}

async function timeOnce(run: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await run();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** POST a body to /files, or GET one and count its bytes, with Node's http module: no SDK, no fetch. */
function rawHttp(envd: TestEnvd, method: 'GET' | 'POST', path: string, body?: Buffer): Promise<number> {
  const url = new URL(`${envd.url}/files?path=${encodeURIComponent(path)}`);
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method, headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {} }, (response) => {
      let bytes = 0;
      response.on('data', (chunk: Buffer) => (bytes += chunk.length));
      response.on('end', () => (response.statusCode === 200 ? resolve(bytes) : reject(new Error(`${method} ${path}: ${response.statusCode}`))));
    });
    request.on('error', reject);
    request.end(body);
  });
}

function spawnTrue(): Promise<void> {
  return new Promise((resolve, reject) => spawn('true').on('exit', () => resolve()).on('error', reject));
}

/** Raw Connect Start of `head -c N MiB`, counting the bytes of the data events as they arrive. */
async function streamStdout(envd: TestEnvd, mebibytes: number): Promise<{ bytes: number; ms: number; peakRssMiB: number }> {
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(envd))), 50);
  const start = process.hrtime.bigint();
  const response = await fetch(`${envd.url}/process.Process/Start`, {
    method: 'POST',
    headers: { 'content-type': 'application/connect+json', 'connect-protocol-version': '1' },
    body: new Uint8Array(encodeEnvelope({ process: { cmd: '/usr/bin/head', args: ['-c', `${mebibytes}M`, '/dev/zero'] } })),
  });
  const reader = new EnvelopeReader(1 << 28);
  let bytes = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    for (const envelope of reader.push(Buffer.from(chunk))) {
      if (envelope.flags & ENVELOPE_FLAG.endStream) continue;
      const message = JSON.parse(envelope.data.toString()) as { event?: { data?: { stdout?: string } } };
      const data = message.event?.data?.stdout;
      if (data) bytes += Buffer.byteLength(data, 'base64');
    }
  }
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  clearInterval(sampler);
  if (bytes !== mebibytes * 1024 * 1024) throw new Error(`streamed ${bytes} bytes, expected ${mebibytes} MiB`);
  return { bytes, ms, peakRssMiB: Math.max(peak, rssMiB(envd)) };
}

function pipeThroughput(mebibytes: number): { bytes: number; ms: number } {
  const start = process.hrtime.bigint();
  spawnSync('/bin/sh', ['-c', `head -c ${mebibytes}M /dev/zero | cat > /dev/null`]);
  return { bytes: mebibytes * 1024 * 1024, ms: Number(process.hrtime.bigint() - start) / 1e6 };
}

function rssMiB(envd: TestEnvd): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${envd.envdPid()}/status`, 'utf8'));
  return Number(match?.[1] ?? 0) / 1024;
}

function nodeFloorRssMiB(): number {
  const result = spawnSync(process.execPath, ['-e', 'const m = /VmRSS:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8")); console.log(m[1])']);
  return Number(result.stdout.toString().trim()) / 1024;
}
