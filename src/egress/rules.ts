import { promises as dns } from 'node:dns';
import { domainToASCII } from 'node:url';
import { formatIp, formatRange, hasHostBits, inRange, networkOf, parseIp, parseRange, specialKind, type IpAddress, type IpRange } from './addresses.ts';
import type { NetworkRules } from './types.ts';

/**
 * What a sandbox may reach: entries of network.allow and network.deny, parsed
 * once, and the decision for one destination. Deny is checked first; a name
 * reaches only the addresses it resolved to here, and none that is loopback,
 * private, link-local or a cloud's metadata service unless an address entry
 * names it (a rebinding name cannot turn an allowed domain into a door to the host).
 */

/** `example.com`, `*.example.com` (subdomains at any depth, not the name itself), with an optional port. */
export interface NameRule {
  kind: 'name';
  entry: string;
  name: string;
  subdomains: boolean;
  port: number | null;
}

/** `1.2.3.4`, `10.0.0.0/8`, `[2001:db8::1]:443`, `2001:db8::/32`: an address or a range, with an optional port. */
export interface AddressRule {
  kind: 'address';
  entry: string;
  range: IpRange;
  port: number | null;
}

export type Rule = NameRule | AddressRule;

export interface ParsedRules {
  allow: Rule[];
  deny: Rule[];
}

/** Every address a name resolves to. */
export type Lookup = (host: string) => Promise<string[]>;

export type Decision =
  /** Connect to one of these addresses, and to nothing else: they are the ones that were checked. */
  | { verdict: 'allow'; addresses: string[] }
  /** Refused by the rules; `rule` says which (`deny *.evil.com`, `not in allowlist`, `resolves to private address 10.1.2.3`). */
  | { verdict: 'refuse'; rule: string }
  /** Allowed, but the name does not resolve: not a violation, an unreachable host. */
  | { verdict: 'unresolved'; reason: string };

export const NOT_ALLOWED = 'not in allowlist';

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;
const PORT = /^[1-9]\d{0,4}$/;

export const systemLookup: Lookup = async (host) => (await dns.lookup(host, { all: true })).map((entry) => entry.address);

/** One entry, as written in network.allow or network.deny; throws an Error naming it when it is not a destination. */
export function parseRule(entry: string): Rule {
  const text = entry.trim();
  const invalid = (why: string) => new Error(`${JSON.stringify(entry)} is not a destination: ${why}`);
  if (text === '') throw invalid('it is empty');
  const bracketed = /^\[([^\]]*)\](?::(.*))?$/.exec(text);
  let [host, portText] = bracketed ? [bracketed[1] ?? '', bracketed[2]] : [text, undefined];
  if (bracketed && !host.includes(':')) throw invalid('only an IPv6 address goes in brackets');
  // A bare IPv6 address is all colons and carries no port; anything else splits at its one colon.
  if (!bracketed && text.split(':').length === 2) [host = '', portText] = text.split(':');
  let port: number | null = null;
  if (portText !== undefined) {
    if (!PORT.test(portText) || Number(portText) > 65535) throw invalid(`the port ${JSON.stringify(portText)} is not a number from 1 to 65535`);
    port = Number(portText);
  }
  if (host.includes(':') || /^[\d./]+$/.test(host)) {
    const range = parseRange(host);
    if (range === null) throw invalid('it is not an IP address or CIDR range (1.2.3.4, 10.0.0.0/8, [2001:db8::1], 2001:db8::/32)');
    if (hasHostBits(range)) throw invalid(`the address has bits set past its /${range.prefix}: the range is ${formatRange(networkOf(range))}`);
    return { kind: 'address', entry: text, range, port };
  }
  const subdomains = host.startsWith('*.');
  const name = hostName(subdomains ? host.slice(2) : host);
  if (name === null) {
    if (host.includes('*')) throw invalid('a wildcard stands only at the start, before a domain: *.example.com');
    throw invalid('it is not a host name, an IP address or a CIDR range');
  }
  return { kind: 'name', entry: text, name, subdomains, port };
}

/** Both lists parsed; throws one Error naming every bad entry. */
export function parseRules(rules: NetworkRules): ParsedRules {
  const problems: string[] = [];
  const parseList = (list: string, entries: string[]): Rule[] =>
    entries.flatMap((entry) => {
      try {
        return [parseRule(entry)];
      } catch (error) {
        problems.push(`${list}: ${(error as Error).message}`);
        return [];
      }
    });
  const parsed = { allow: parseList('allow', rules.allow), deny: parseList('deny', rules.deny) };
  if (problems.length > 0) throw new Error(problems.join('; '));
  return parsed;
}

/** Throws, naming every bad entry, unless the rules can all be parsed. */
export function checkRules(rules: NetworkRules): void {
  parseRules(rules);
}

/**
 * Whether host:port may be reached, and at which addresses. `host` is a name
 * or an IP literal without brackets. Names are resolved only once they are
 * allowed, so a refused name never reaches a DNS server either.
 */
export async function decide(rules: ParsedRules, host: string, port: number, lookup: Lookup = systemLookup): Promise<Decision> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return refuse(`port ${port} is not a port`);
  const literal = parseIp(host);
  if (literal !== null) {
    const denied = addressRule(rules.deny, literal, port);
    if (denied) return refuse(`deny ${denied.entry}`);
    // Name entries never match an address: *.example.com says nothing about 10.0.0.1.
    return addressRule(rules.allow, literal, port) ? { verdict: 'allow', addresses: [formatIp(literal)] } : refuse(NOT_ALLOWED);
  }
  const name = hostName(host);
  if (name === null) return refuse('not a host name');
  const denied = nameRule(rules.deny, name, port);
  if (denied) return refuse(`deny ${denied.entry}`);
  if (!nameRule(rules.allow, name, port)) return refuse(NOT_ALLOWED);

  let resolved: string[];
  try {
    resolved = await lookup(name);
  } catch (error) {
    return { verdict: 'unresolved', reason: (error as NodeJS.ErrnoException).code ?? (error as Error).message };
  }
  if (resolved.length === 0) return { verdict: 'unresolved', reason: 'no addresses' };
  const addresses: string[] = [];
  for (const text of resolved) {
    const address = parseIp(text);
    if (address === null) return refuse(`resolves to unusable address ${text}`);
    const deniedAddress = addressRule(rules.deny, address, port);
    if (deniedAddress) return refuse(`deny ${deniedAddress.entry}`);
    // One bad address refuses the name: connecting to "the good one" would leave the choice to whoever runs its DNS.
    const kind = specialKind(address);
    if (kind !== null && !addressRule(rules.allow, address, port)) return refuse(`resolves to ${kind} address ${formatIp(address)}`);
    addresses.push(formatIp(address));
  }
  return { verdict: 'allow', addresses };
}

/** `example.com:443`, `[2001:db8::1]:443`: a destination as violations and messages show it. */
export function formatTarget(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The name lowercased, without its trailing dot and in ASCII (punycode); null if it is not a host name. */
function hostName(text: string): string | null {
  let name = text.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  // eslint-disable-next-line no-control-regex
  if (/[^\x00-\x7f]/.test(name)) name = domainToASCII(name);
  if (name === '' || name.length > 253) return null;
  const labels = name.split('.');
  if (!labels.every((label) => LABEL.test(label))) return null;
  // getaddrinfo reads 1.2.3, 127.1 or 10.0.0.010 as addresses: an all-digit last label is not a name.
  return /^\d+$/.test(labels.at(-1) ?? '') ? null : name;
}

function nameRule(rules: Rule[], name: string, port: number): NameRule | undefined {
  return rules.find((rule): rule is NameRule => rule.kind === 'name' && (rule.port === null || rule.port === port) && (rule.subdomains ? name.endsWith(`.${rule.name}`) : name === rule.name));
}

function addressRule(rules: Rule[], address: IpAddress, port: number): AddressRule | undefined {
  return rules.find((rule): rule is AddressRule => rule.kind === 'address' && (rule.port === null || rule.port === port) && inRange(address, rule.range));
}

function refuse(rule: string): Decision {
  return { verdict: 'refuse', rule };
}
