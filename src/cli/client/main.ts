import { BrigError } from '../../protocol/index.ts';
import { attach, ATTACH_HELP } from './attach.ts';
import { commit, COMMIT_HELP } from './commit.ts';
import { connect, type Daemon } from './connection.ts';
import { cp, CP_HELP } from './cp.ts';
import { create, CREATE_HELP } from './create.ts';
import { exec, EXEC_HELP } from './exec.ts';
import { info, INFO_HELP } from './info.ts';
import { events, EVENTS_HELP } from './events.ts';
import { cancel, CANCEL_HELP, jobs, JOBS_HELP, schedule, SCHEDULE_HELP, status, STATUS_HELP } from './jobs.ts';
import { prune, PRUNE_HELP, rm, RM_HELP, stop, STOP_HELP } from './lifecycle.ts';
import { ls, LS_HELP } from './list.ts';
import { logs, LOGS_HELP } from './logs.ts';
import { net, NET_HELP, transcript, TRANSCRIPT_HELP, violations, VIOLATIONS_HELP } from './network.ts';
import { reportError } from './output.ts';
import { shell, SHELL_HELP } from './shell.ts';
import { stats, STATS_HELP } from './stats.ts';

/**
 * The entry of dist/client.cjs: the docker-like commands over a running
 * daemon (`brig serve`). Its own bundle, loaded only for these commands, so
 * `brig run` never pays for it.
 */

interface Command {
  run(daemon: Daemon, argv: string[]): Promise<number>;
  help: string;
  /** Flags only before the sandbox's name: what follows is the command's own (exec, shell). */
  flagsFirst?: boolean;
}

export const COMMANDS: Record<string, Command> = {
  create: { run: create, help: CREATE_HELP },
  ls: { run: ls, help: LS_HELP },
  exec: { run: exec, help: EXEC_HELP, flagsFirst: true },
  shell: { run: shell, help: SHELL_HELP, flagsFirst: true },
  attach: { run: attach, help: ATTACH_HELP },
  logs: { run: logs, help: LOGS_HELP },
  cp: { run: cp, help: CP_HELP },
  stop: { run: stop, help: STOP_HELP },
  commit: { run: commit, help: COMMIT_HELP },
  rm: { run: rm, help: RM_HELP },
  prune: { run: prune, help: PRUNE_HELP },
  stats: { run: stats, help: STATS_HELP },
  info: { run: info, help: INFO_HELP },
  net: { run: net, help: NET_HELP },
  violations: { run: violations, help: VIOLATIONS_HELP },
  transcript: { run: transcript, help: TRANSCRIPT_HELP },
  schedule: { run: schedule, help: SCHEDULE_HELP },
  status: { run: status, help: STATUS_HELP },
  jobs: { run: jobs, help: JOBS_HELP },
  cancel: { run: cancel, help: CANCEL_HELP },
  events: { run: events, help: EVENTS_HELP },
};

const DAEMON_NOTE = `
The daemon is at BRIG_URL (default http://127.0.0.1:3000); its API key is
BRIG_API_KEY, else the api-key file in its default state directory.
Sandboxes are named by id or name.`;

export async function main(argv: string[]): Promise<number> {
  const [name = '', ...rest] = argv;
  const command = COMMANDS[name];
  if (!command) throw new BrigError('BRIG_USAGE', `unknown command '${name}'`, 'see `brig --help`');
  if (helpAsked(rest, command.flagsFirst === true)) {
    process.stdout.write(command.help + '\n' + DAEMON_NOTE + '\n');
    return 0;
  }
  const asJson = flagWords(rest, command.flagsFirst === true).includes('--json');
  try {
    return await command.run(connect(), rest);
  } catch (error) {
    // Handled here, with the client's own BrigError class: the main bundle's is a copy.
    if (!(error instanceof BrigError)) throw error;
    reportError(error, asJson);
    return error.exitCode;
  }
}

/** The words that may be brig's flags: before `--`, and for exec and shell before the sandbox's name too. */
function flagWords(argv: string[], flagsFirst: boolean): string[] {
  const dashes = argv.indexOf('--');
  const words = dashes === -1 ? argv : argv.slice(0, dashes);
  if (!flagsFirst) return words;
  const operand = words.findIndex((word) => !word.startsWith('-'));
  return operand === -1 ? words : words.slice(0, operand);
}

function helpAsked(argv: string[], flagsFirst: boolean): boolean {
  return flagWords(argv, flagsFirst).some((word) => word === '--help' || word === '-h');
}
