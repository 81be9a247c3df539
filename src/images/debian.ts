/**
 * FROM debian:SUITE: brig has no container registry to pull from, so a Debian
 * base is bootstrapped from the Debian package mirror the host's apt uses,
 * with mmdebstrap (minbase: the essential packages and apt). Its tar comes on
 * stdout and goes straight into the store's hostile-safe extractor. The
 * `-slim` variant excludes docs, man pages and locales as Debian's own slim
 * images do (debuerreotype's slimify lists), through dpkg path-excludes that
 * stay in the image, so later apt-get installs stay slim too.
 */
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

export interface DebianBase {
  suite: string;
  slim: boolean;
}

/** Docker Hub's version tags, so `FROM debian:12` means what it does there. */
const VERSIONS: Record<string, string> = { '10': 'buster', '11': 'bullseye', '12': 'bookworm', '13': 'trixie', '14': 'forky' };

/** "debian", "debian:bookworm", "debian:12-slim", "docker.io/library/debian:trixie"; undefined for anything else. */
export function parseDebianRef(ref: string): DebianBase | undefined {
  const match = /^(?:(?:docker\.io\/)?library\/)?debian(?::([a-z0-9.]+?)(-slim)?)?$/.exec(ref);
  if (match === null) return undefined;
  const tag = match[1] ?? 'stable';
  const suite = VERSIONS[tag] ?? tag;
  // latest is Docker Hub's name for stable
  if (!/^[a-z]+$/.test(suite)) return undefined;
  return { suite: suite === 'latest' ? 'stable' : suite, slim: match[2] !== undefined };
}

/** dpkg path filters of Debian's slim images (debuerreotype's .slimify-excludes and -includes). */
export const SLIM_DPKG_OPTIONS = [
  'path-exclude=/usr/share/doc/*',
  'path-exclude=/usr/share/info/*',
  'path-exclude=/usr/share/linda/*',
  'path-exclude=/usr/share/lintian/overrides/*',
  'path-exclude=/usr/share/locale/*',
  'path-exclude=/usr/share/man/*',
  'path-exclude=/usr/share/gnome/help/*/*',
  'path-exclude=/usr/share/omf/*/*-*.emf',
  'path-include=/usr/share/doc/*/copyright',
  'path-include=/usr/share/gnome/help/*/C/*',
  'path-include=/usr/share/locale/all_languages',
  'path-include=/usr/share/locale/currency/*',
  'path-include=/usr/share/locale/l10n/*',
  'path-include=/usr/share/locale/languages',
  'path-include=/usr/share/locale/locale.alias',
  'path-include=/usr/share/omf/*/*-C.emf',
];

/** Every URI of the host's apt sources (sources.list, then sources.list.d in apt's order; both formats). */
async function hostAptUris(aptDir: string): Promise<string[]> {
  const files = [join(aptDir, 'sources.list')];
  const listDir = join(aptDir, 'sources.list.d');
  for (const name of (await fs.readdir(listDir).catch(() => [])).sort()) {
    if (name.endsWith('.list') || name.endsWith('.sources')) files.push(join(listDir, name));
  }
  const uris: string[] = [];
  for (const file of files) {
    const text = await fs.readFile(file, 'utf8').catch(() => '');
    uris.push(...(file.endsWith('.sources') ? deb822Uris(text) : oneLineUris(text)));
  }
  return uris;
}

/** The Debian archive URI the host's apt uses (a URI ending in /debian), or undefined to use mmdebstrap's default. */
export async function hostDebianMirror(aptDir = '/etc/apt'): Promise<string | undefined> {
  const mirror = (await hostAptUris(aptDir)).find((uri) => /^https?:\/\/[^\s/]+(\/[^\s]*)?\/debian\/?$/.test(uri));
  return mirror?.replace(/\/$/, '');
}

/** Debian's own mirrors, which images bootstrapped by mmdebstrap name in their sources. */
const DEBIAN_MIRRORS = ['deb.debian.org', 'security.debian.org'];

/** The hosts a RUN step's network reaches by default: Debian's mirrors and those of the host's apt sources. */
export async function mirrorHosts(aptDir = '/etc/apt'): Promise<string[]> {
  const hosts = new Set(DEBIAN_MIRRORS);
  for (const uri of await hostAptUris(aptDir)) {
    try {
      hosts.add(new URL(uri).hostname);
    } catch {
      // Not a URL (a cdrom: source).
    }
  }
  return [...hosts];
}

function oneLineUris(text: string): string[] {
  return text.split('\n').flatMap((line) => {
    const match = /^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)/.exec(line);
    return match === null ? [] : [match[1] as string];
  });
}

/** deb822 stanzas of Types: deb with their URIs (one stanza may list several, and may be Enabled: no). */
function deb822Uris(text: string): string[] {
  return text.split(/\n\s*\n/).flatMap((stanza) => {
    const fields = new Map<string, string>();
    for (const line of stanza.split('\n')) {
      const match = /^([A-Za-z-]+):\s*(.*)$/.exec(line);
      if (match !== null) fields.set((match[1] as string).toLowerCase(), match[2] as string);
    }
    if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) return [];
    if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') return [];
    return (fields.get('uris') ?? '').split(/\s+/).filter((uri) => uri !== '');
  });
}

/** Services never start inside a build or a sandbox: Docker's Debian images ship the same policy-rc.d. */
const POLICY_RC_D = 'printf "#!/bin/sh\\nexit 101\\n" > "$1/usr/sbin/policy-rc.d" && chmod 755 "$1/usr/sbin/policy-rc.d"';

const MERGED_USR_HOOKS = '/usr/share/mmdebstrap/hooks/maybe-merged-usr';

export function mmdebstrapArgs(base: DebianBase, mirror: string | undefined): string[] {
  const args = [
    '--variant=minbase',
    '--mode=root',
    '--format=tar',
    // merged /usr the debootstrap way (usr-is-merged), not the usrmerge package, which pulls in perl (~25 MiB)
    `--hook-dir=${MERGED_USR_HOOKS}`,
    // mmdebstrap puts its own policy-rc.d in place while it installs and takes it away after, ours with it: so not that step
    '--skip=chroot/policy-rc.d',
    `--customize-hook=${POLICY_RC_D}`,
  ];
  if (base.slim) for (const option of SLIM_DPKG_OPTIONS) args.push(`--dpkgopt=${option}`);
  args.push(base.suite, '-');
  if (mirror !== undefined) args.push(mirror);
  return args;
}

export interface Bootstrap {
  tar: Readable;
  /** Resolves when mmdebstrap has exited, with its exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  kill(): void;
}

/** Starts mmdebstrap; its progress (stderr) goes to `log`, its tar is `tar`. */
export function bootstrapDebian(base: DebianBase, mirror: string | undefined, log: (chunk: Buffer) => void): Bootstrap {
  // its own process group: mmdebstrap's main process only waits for its worker on a signal, as when
  // Ctrl-C reaches a terminal's whole group; so a stop signals the group, and it cleans up (mounts, tempdir)
  const child = spawn('mmdebstrap', mmdebstrapArgs(base, mirror), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C.UTF-8' } });
  child.stderr.on('data', log);
  const exit = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  const kill = (): void => {
    // until it has exited (and its group id could be anyone's), and never a stray group
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      // the group is gone already
    }
  };
  return { tar: child.stdout, exit, kill };
}
