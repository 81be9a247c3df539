import { setTimeout as sleep } from 'node:timers/promises';
import { BrigError } from '../../protocol/index.ts';
import { READY_PORT_LABEL, START_LABEL } from '../../images/index.ts';
import { EnvdClient, type EnvdEndpoint } from './envd-client.ts';

/**
 * A template's start command (E2B's setStartCmd): `LABEL brig.start` runs in
 * the background in every sandbox from the image, as the sandbox's default user (E2B's `user` when the image has one), tagged
 * brig-start, before the create answers; with `LABEL brig.ready-port` the
 * create also waits until a server accepts connections on that port inside
 * the sandbox (the code interpreter's kernel is up when runCode comes).
 */

export interface TemplateStart {
  command: string;
  readyPort: number | null;
}

export const START_TAG = 'brig-start';
/** How long a start command may take to open its port: a Jupyter kernel takes seconds; a slow host, more. */
const READY_WITHIN_MS = 120_000;
const POLL_MS = 50;
/** The start command's last output, quoted when it fails. */
const OUTPUT_KEPT = 2000;

/** The start a template's labels ask for; null when they ask for none. */
export function templateStart(labels: Record<string, string>, image: string): TemplateStart | null {
  const command = labels[START_LABEL];
  if (command === undefined || command.trim() === '') return null;
  const port = labels[READY_PORT_LABEL];
  if (port !== undefined && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65_535)) {
    throw new BrigError('BRIG_IMAGE_INVALID', `image ${image}: LABEL ${READY_PORT_LABEL}=${JSON.stringify(port)} is not a port number`, 'give a port from 1 to 65535, or leave the label out');
  }
  return { command, readyPort: port === undefined ? null : Number(port) };
}

/** Starts it and, with a ready port, waits for the port. Fails (BRIG_TEMPLATE_NOT_READY) if the command ends first or the port stays shut. */
export async function startTemplate(endpoint: EnvdEndpoint, start: TemplateStart, image: string): Promise<void> {
  const envd = new EnvdClient(endpoint, { errorCode: 'BRIG_TEMPLATE_NOT_READY' });
  const leave = new AbortController();
  const events = envd.start({ process: { cmd: '/bin/sh', args: ['-c', start.command] }, tag: START_TAG }, null, leave.signal);
  let output = '';
  let ended: string | null = null;
  let started!: () => void;
  const running = new Promise<void>((resolve) => (started = resolve));
  // Read as it comes: its end (and what it said) is why a port never opened.
  const watching = (async () => {
    for await (const event of events) {
      if ('start' in event) started();
      if ('data' in event) output = (output + Buffer.from(Object.values(event.data)[0] ?? '', 'base64').toString('utf8')).slice(-OUTPUT_KEPT);
      // Ending well is allowed: a start command may start its servers in the background and exit.
      if ('end' in event && !(event.end.exited && event.end.exitCode === 0)) ended = event.end.status;
    }
  })()
    .catch((error: unknown) => {
      if (!leave.signal.aborted) ended ??= (error as Error).message;
    })
    .finally(started);
  try {
    // Leaving before envd said it started would cancel it (envd starts nothing for a caller gone).
    await running;
    if (ended === null && start.readyPort === null) return;
    const deadline = Date.now() + READY_WITHIN_MS;
    while (ended === null && start.readyPort !== null) {
      const stream = await envd.tunnel(start.readyPort).catch((error: unknown) => {
        if (error instanceof BrigError && error.code === 'BRIG_PORT_CLOSED') return null;
        throw error;
      });
      if (stream) return void stream.destroy();
      if (Date.now() > deadline) break;
      await sleep(POLL_MS);
    }
    const why = ended !== null ? `its start command failed (${ended})${start.readyPort === null ? '' : ` before port ${start.readyPort} opened`}` : `port ${start.readyPort} did not open within ${READY_WITHIN_MS / 1000} s of its start command`;
    throw new BrigError('BRIG_TEMPLATE_NOT_READY', `image ${image}: ${why}${output.trim() ? `; it said: ${output.trim().slice(-500)}` : ''}`, `run \`${start.command}\` by hand in a sandbox of the image to see why (docs/templates.md)`);
  } finally {
    // The command runs on: leaving its stream only detaches it.
    leave.abort();
    await watching;
  }
}
