import { Sandbox as CodeSandbox } from '@e2b/code-interpreter';
import { Sandbox as DesktopSandbox } from '@e2b/desktop';
import { Sandbox, type SandboxOpts } from 'e2b';
import { percentile } from './measure.ts';
import { tempWorkspace } from '../test/helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../test/helpers/daemon.ts';
import { seedTemplateImage } from '../test/helpers/images.ts';

/**
 * Issue 15: the companion SDKs' latencies against brig, each beside a peer
 * measured in the same run:
 *   - runCode('1+1') round trip, SDK → daemon → sandbox port → brig's server →
 *     kernel, beside the same kernel round trip taken inside the sandbox by
 *     jupyter_client alone (what the kernel itself costs);
 *   - create → first runCode (the code-interpreter template, its kernel
 *     started before the create answers), beside create → first command on
 *     the base template;
 *   - desktop.screenshot() (scrot, then the PNG read back through envd),
 *     beside scrot alone timed inside the sandbox.
 */

const KERNEL_ALONE = `
import sys, time, statistics
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name='python3')
def once():
    msg = kc.execute('1+1')
    while True:
        reply = kc.get_iopub_msg(timeout=30)
        if reply['parent_header'].get('msg_id') == msg and reply['msg_type'] == 'status' and reply['content']['execution_state'] == 'idle':
            return
for _ in range(10): once()
samples = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter(); once(); samples.append((time.perf_counter() - start) * 1000)
print(statistics.median(samples))
kc.stop_channels(); km.shutdown_kernel(now=True)
`;

function median(samples: number[]): number {
  return percentile([...samples].sort((a, b) => a - b), 0.5);
}

async function timed<T>(work: () => Promise<T>): Promise<[T, number]> {
  const start = process.hrtime.bigint();
  const result = await work();
  return [result, Number(process.hrtime.bigint() - start) / 1e6];
}

export async function benchTemplates(roundTrips: number, creates: number, screenshots: number): Promise<string> {
  const states = { code: tempWorkspace('brig-bench-code-'), desktop: tempWorkspace('brig-bench-desktop-'), base: tempWorkspace('brig-bench-base-') };
  const daemons: RunningDaemon[] = [];
  const killed: Array<{ kill(): Promise<unknown> }> = [];
  try {
    seedTemplateImage(states.code.dir, 'code-interpreter');
    seedTemplateImage(states.desktop.dir, 'desktop');
    const code = await serveDaemon(states.code.dir, { apiKey: 'bench', pool: 0 });
    const desktopDaemon = await serveDaemon(states.desktop.dir, { apiKey: 'bench', pool: 0 });
    const base = await serveDaemon(states.base.dir, { apiKey: 'bench', pool: 0 });
    daemons.push(code, desktopDaemon, base);
    const opts = (daemon: RunningDaemon) => ({ apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url }) as SandboxOpts;

    // create → first result, alternating the two kinds so the machine's noise falls on both
    const toFirst: [number[], number[]] = [[], []];
    for (let run = 0; run < creates; run++) {
      for (const which of run % 2 === 0 ? [0, 1] : [1, 0]) {
        if (which === 0) {
          const [sandbox, ms] = await timed(async () => {
            const made = await CodeSandbox.create(opts(code));
            await made.runCode('1+1');
            return made;
          });
          toFirst[0].push(ms);
          await sandbox.kill();
        } else {
          const [sandbox, ms] = await timed(async () => {
            const made = await Sandbox.create(opts(base));
            await made.commands.run('true');
            return made;
          });
          toFirst[1].push(ms);
          await sandbox.kill();
        }
      }
    }

    const interpreter = await CodeSandbox.create(opts(code));
    killed.push(interpreter);
    for (let warm = 0; warm < 10; warm++) await interpreter.runCode('1+1');
    const trips: number[] = [];
    for (let run = 0; run < roundTrips; run++) trips.push((await timed(() => interpreter.runCode('1+1')))[1]);
    await interpreter.files.write('/tmp/kernel-alone.py', KERNEL_ALONE);
    const alone = Number((await interpreter.commands.run(`python3 /tmp/kernel-alone.py ${roundTrips}`, { timeoutMs: 600_000 })).stdout.trim());

    const desktop = await DesktopSandbox.create({ ...opts(desktopDaemon), timeoutMs: 600_000 });
    killed.push(desktop);
    await desktop.screenshot();
    const shots: number[] = [];
    for (let run = 0; run < screenshots; run++) shots.push((await timed(() => desktop.screenshot()))[1]);
    const scrotAlone = await desktop.commands.run(`for i in $(seq ${screenshots}); do s=$(date +%s%N); scrot --pointer --overwrite /tmp/bench.png; e=$(date +%s%N); echo $(( (e - s) / 1000 )); done`);
    const scrotMs = median(scrotAlone.stdout.trim().split('\n').map((micros) => Number(micros) / 1000));

    const [trip, first, firstBase, shot] = [median(trips), median(toFirst[0]), median(toFirst[1]), median(shots)];
    return [
      '### templates: the companion SDKs against brig (the same run)',
      '',
      '| what | brig | peer | ratio |',
      '| --- | --- | --- | --- |',
      `| runCode('1+1') round trip, p50 of ${roundTrips} | ${trip.toFixed(1)} ms | the kernel alone (jupyter_client in the sandbox): ${alone.toFixed(1)} ms | ${(trip / alone).toFixed(2)}× |`,
      `| create → first runCode, p50 of ${creates} | ${first.toFixed(0)} ms | create → first command, base template: ${firstBase.toFixed(0)} ms | ${(first / firstBase).toFixed(2)}× |`,
      `| desktop.screenshot(), 1024×768, p50 of ${screenshots} | ${shot.toFixed(1)} ms | scrot alone in the sandbox: ${scrotMs.toFixed(1)} ms | ${(shot / scrotMs).toFixed(2)}× |`,
    ].join('\n');
  } finally {
    for (const sandbox of killed) await sandbox.kill().catch(() => {});
    for (const daemon of daemons) await daemon.stop();
    for (const state of Object.values(states)) state.remove();
  }
}
