import { isIPv4, isIPv6 } from 'node:net';

/**
 * IP addresses as numbers, so ranges compare exactly: an IPv4 address is 32
 * bits, an IPv6 one 128. An IPv4-mapped IPv6 address (::ffff:10.0.0.1) is
 * read as the IPv4 address it reaches, so no rule or guard can be sidestepped
 * by writing one in the other form.
 */

export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

/** A CIDR range; a single address is a range of its full length. */
export interface IpRange extends IpAddress {
  prefix: number;
}

const BITS = { 4: 32, 6: 128 } as const;
const MAPPED_PREFIX = 0xffffn << 32n;

/** A dotted-quad or IPv6 address (no brackets, no zone) as a number; null for anything else. */
export function parseIp(text: string): IpAddress | null {
  if (isIPv4(text)) return { family: 4, value: ipv4Value(text) };
  // node accepts a zone (fe80::1%eth0); a zone names a host interface, which a sandbox has no business choosing.
  if (!isIPv6(text) || text.includes('%')) return null;
  const value = ipv6Value(text);
  return value >> 32n === MAPPED_PREFIX >> 32n ? { family: 4, value: value & 0xffffffffn } : { family: 6, value };
}

/** `10.0.0.0/8`, `2001:db8::/32`, or one address; a mapped IPv6 range of /96 or longer becomes the IPv4 range it covers. Null if malformed. */
export function parseRange(text: string): IpRange | null {
  const [addressText = '', prefixText, extra] = text.split('/');
  const address = extra === undefined ? parseIp(addressText) : null;
  if (address === null) return null;
  const writtenBits = addressText.includes(':') ? 128 : 32;
  const written = prefixText === undefined ? writtenBits : prefixOf(prefixText);
  if (written === null || written > writtenBits) return null;
  // A mapped address written as IPv6 counts 96 bits before its IPv4 part.
  const prefix = written - (writtenBits - BITS[address.family]);
  return prefix < 0 ? null : { ...address, prefix };
}

function prefixOf(text: string): number | null {
  return /^(0|[1-9]\d{0,2})$/.test(text) ? Number(text) : null;
}

export function inRange(address: IpAddress, range: IpRange): boolean {
  if (address.family !== range.family) return false;
  const shift = BigInt(BITS[range.family] - range.prefix);
  return address.value >> shift === range.value >> shift;
}

/** Whether a range has bits set below its prefix (10.1.2.3/8), which usually means a typo. */
export function hasHostBits(range: IpRange): boolean {
  return (range.value & ((1n << BigInt(BITS[range.family] - range.prefix)) - 1n)) !== 0n;
}

/** The range with its host bits cleared: 10.1.2.3/8 → 10.0.0.0/8. */
export function networkOf(range: IpRange): IpRange {
  const shift = BigInt(BITS[range.family] - range.prefix);
  return { ...range, value: (range.value >> shift) << shift };
}

export function formatIp(address: IpAddress): string {
  if (address.family === 4) return [24n, 16n, 8n, 0n].map((shift) => String((address.value >> shift) & 0xffn)).join('.');
  const groups = Array.from({ length: 8 }, (_, index) => Number((address.value >> BigInt(112 - index * 16)) & 0xffffn));
  // RFC 5952: the longest run of two or more zero groups (the first, on a tie) becomes "::".
  let [runStart, runLength] = [-1, 1];
  for (let start = 0; start < 8; start++) {
    let length = 0;
    while (start + length < 8 && groups[start + length] === 0) length++;
    if (length > runLength) [runStart, runLength] = [start, length];
  }
  const hex = groups.map((group) => group.toString(16));
  if (runStart < 0) return hex.join(':');
  return `${hex.slice(0, runStart).join(':')}::${hex.slice(runStart + runLength).join(':')}`;
}

export function formatRange(range: IpRange): string {
  return `${formatIp(range)}/${range.prefix}`;
}

/** What makes an address unfit for a name to resolve to, checked in order (the metadata address is also link-local). */
const SPECIAL: [string, string[]][] = [
  ['cloud metadata', ['169.254.169.254/32', '100.100.100.200/32', 'fd00:ec2::254/128']],
  ['unspecified', ['0.0.0.0/8', '::/128']],
  ['loopback', ['127.0.0.0/8', '::1/128']],
  ['private', ['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7', 'fec0::/10']],
  ['link-local', ['169.254.0.0/16', 'fe80::/10']],
  ['CGNAT', ['100.64.0.0/10']],
  ['multicast', ['224.0.0.0/4', 'ff00::/8']],
  ['broadcast', ['255.255.255.255/32']],
  ['reserved', ['240.0.0.0/4']],
];

const SPECIAL_RANGES: [string, IpRange][] = SPECIAL.flatMap(([kind, ranges]) => ranges.map((text): [string, IpRange] => [kind, parseRange(text) as IpRange]));

/** `loopback`, `private`, `cloud metadata`, … for an address a public name should never lead to; null for an ordinary one. */
export function specialKind(address: IpAddress): string | null {
  for (const [kind, range] of SPECIAL_RANGES) if (inRange(address, range)) return kind;
  return null;
}

function ipv4Value(text: string): bigint {
  return text.split('.').reduce((value, octet) => (value << 8n) | BigInt(octet), 0n);
}

/** Expects text that isIPv6 accepted: at most one "::", an optional dotted-quad tail. */
function ipv6Value(text: string): bigint {
  let groups = text;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (tail?.[1]) {
    const quad = ipv4Value(tail[1]);
    groups = `${text.slice(0, tail.index)}${(quad >> 16n).toString(16)}:${(quad & 0xffffn).toString(16)}`;
  }
  const [head = '', rest] = groups.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const all = rest === undefined ? headGroups : [...headGroups, ...Array<string>(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  return all.reduce((value, group) => (value << 16n) | BigInt(`0x${group}`), 0n);
}
