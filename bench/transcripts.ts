import { Sandbox, type SandboxOpts } from 'e2b';
import { percentile } from './measure.ts';
import { tempWorkspace } from '../test/helpers/brig.ts';
import { serveDaemon, type RunningDaemon } from '../test/helpers/daemon.ts';

/**
 * Issue 14: what recording transcripts costs. Two daemons in the same run,
 * one recording (the default) and one with --transcript-max 0 (nothing
 * recorded, the gateway's tap otherwise the same), one sandbox each, their
 * commands interleaved so that the machine's noise falls on both: the exec
 * round trip (commands.run("true") through the e2b SDK), and the output
 * throughput of a command writing `outputMiB` MiB (all of it recorded).
 */
export async function benchTranscripts(roundTrips: number, outputRuns: number, outputMiB = 8): Promise<string> {
  const states = [tempWorkspace('brig-bench-transcripts-'), tempWorkspace('brig-bench-no-transcripts-')];
  const daemons: RunningDaemon[] = [];
  try {
    daemons.push(await serveDaemon(states[0]?.dir ?? '', { apiKey: 'bench', pool: 0 }));
    daemons.push(await serveDaemon(states[1]?.dir ?? '', { apiKey: 'bench', pool: 0, args: ['--transcript-max', '0'] }));
    const sandboxes = await Promise.all(daemons.map((daemon) => Sandbox.create({ apiKey: 'bench', apiUrl: daemon.url, sandboxUrl: daemon.url } as SandboxOpts)));
    const [recorded, bare] = sandboxes as [Sandbox, Sandbox];
    const trips: [number[], number[]] = [[], []];
    for (let run = 0; run < roundTrips + 20; run++) {
      // Alternate which goes first, so neither always runs on a warmer machine.
      for (const index of run % 2 === 0 ? [0, 1] : [1, 0]) {
        const start = process.hrtime.bigint();
        await (index === 0 ? recorded : bare).commands.run('true');
        if (run >= 20) trips[index]?.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
    }
    const throughput: [number[], number[]] = [[], []];
    const command = `head -c ${outputMiB * 1024 * 1024} /dev/zero | tr '\\0' x`;
    for (let run = 0; run < outputRuns + 1; run++) {
      for (const index of run % 2 === 0 ? [0, 1] : [1, 0]) {
        const start = process.hrtime.bigint();
        const result = await (index === 0 ? recorded : bare).commands.run(command);
        if (result.stdout.length !== outputMiB * 1024 * 1024) throw new Error(`the output came back ${result.stdout.length} bytes long`);
        if (run >= 1) throughput[index]?.push(outputMiB / (Number(process.hrtime.bigint() - start) / 1e9));
      }
    }
    await Promise.all(sandboxes.map((sandbox) => sandbox.kill()));
    const [tripOn, tripOff] = trips.map((samples) => percentile([...samples].sort((a, b) => a - b), 0.5)) as [number, number];
    const [mbOn, mbOff] = throughput.map((samples) => percentile([...samples].sort((a, b) => a - b), 0.5)) as [number, number];
    const cost = (tripOn / tripOff - 1) * 100;
    return [
      '### transcripts: what recording costs (the same run, interleaved)',
      '',
      '| what | recording (default) | not recording (--transcript-max 0) | cost | target |',
      '| --- | --- | --- | --- | --- |',
      `| exec round trip, commands.run("true"), p50 of ${roundTrips} | ${tripOn.toFixed(2)} ms | ${tripOff.toFixed(2)} ms | ${cost >= 0 ? '+' : ''}${cost.toFixed(1)}% | ≤ 5%: ${cost <= 5 ? 'met' : 'NOT met'} |`,
      `| output throughput, ${outputMiB} MiB from one command, median of ${outputRuns} | ${mbOn.toFixed(1)} MiB/s | ${mbOff.toFixed(1)} MiB/s | ${((1 - mbOn / mbOff) * 100).toFixed(1)}% slower | reported |`,
    ].join('\n');
  } finally {
    for (const daemon of daemons) await daemon.stop();
    for (const state of states) state.remove();
  }
}
