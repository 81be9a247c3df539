import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatIp, parseIp, specialKind } from '../../src/egress/addresses.ts';
import { checkRules, decide, parseRule, parseRules, systemLookup, type Decision, type Lookup } from '../../src/egress/rules.ts';
import type { NetworkRules } from '../../src/egress/types.ts';

/** A resolver that knows only these names, and remembers what it was asked. */
function fakeLookup(table: Record<string, string[]>): Lookup & { asked: string[] } {
  const asked: string[] = [];
  const lookup = async (host: string) => {
    asked.push(host);
    const addresses = table[host];
    if (addresses === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses;
  };
  return Object.assign(lookup, { asked });
}

const PUBLIC = fakeLookup({
  'example.com': ['93.184.215.14'],
  'api.example.com': ['93.184.215.15'],
  'a.b.example.com': ['93.184.215.16'],
  'example.org': ['2606:2800:21f::1'],
  'rebound.example.com': ['93.184.215.17', '10.1.2.3'],
  'internal.example.com': ['10.1.2.3'],
  'metadata.example.com': ['169.254.169.254'],
  'mapped.example.com': ['::ffff:127.0.0.1'],
  'cgnat.example.com': ['100.64.0.7'],
  'mirror.corp.example': ['10.20.30.40'],
  'denied-net.example.com': ['203.0.113.9'],
  'empty.example.com': [],
});

async function decision(rules: Partial<NetworkRules>, host: string, port = 443, lookup: Lookup = PUBLIC): Promise<Decision> {
  return decide(parseRules({ allow: rules.allow ?? [], deny: rules.deny ?? [] }), host, port, lookup);
}

async function refusedBy(rules: Partial<NetworkRules>, host: string, port = 443, lookup: Lookup = PUBLIC): Promise<string> {
  const result = await decision(rules, host, port, lookup);
  assert.equal(result.verdict, 'refuse', `${host}:${port} should be refused, got ${JSON.stringify(result)}`);
  return result.verdict === 'refuse' ? result.rule : '';
}

async function allowedAt(rules: Partial<NetworkRules>, host: string, port = 443, lookup: Lookup = PUBLIC): Promise<string[]> {
  const result = await decision(rules, host, port, lookup);
  assert.equal(result.verdict, 'allow', `${host}:${port} should be allowed, got ${JSON.stringify(result)}`);
  return result.verdict === 'allow' ? result.addresses : [];
}

describe('parseRule', () => {
  it('reads names, wildcards and ports, case-insensitively and without a trailing dot', () => {
    assert.deepEqual(parseRule('example.com'), { kind: 'name', entry: 'example.com', name: 'example.com', subdomains: false, port: null });
    assert.deepEqual(parseRule('*.Example.COM.'), { kind: 'name', entry: '*.Example.COM.', name: 'example.com', subdomains: true, port: null });
    assert.deepEqual(parseRule('example.com:443'), { kind: 'name', entry: 'example.com:443', name: 'example.com', subdomains: false, port: 443 });
    assert.deepEqual(parseRule('*.example.com:8443'), { kind: 'name', entry: '*.example.com:8443', name: 'example.com', subdomains: true, port: 8443 });
    assert.deepEqual(parseRule('under_score.example.com'), { kind: 'name', entry: 'under_score.example.com', name: 'under_score.example.com', subdomains: false, port: null });
    assert.equal((parseRule('bücher.example') as { name: string }).name, 'xn--bcher-kva.example');
  });

  it('reads addresses and ranges, IPv4 and IPv6, with or without a port', () => {
    const range = (entry: string) => {
      const rule = parseRule(entry);
      assert.equal(rule.kind, 'address');
      return rule.kind === 'address' ? `${formatIp(rule.range)}/${rule.range.prefix} port ${rule.port}` : '';
    };
    assert.equal(range('1.2.3.4'), '1.2.3.4/32 port null');
    assert.equal(range('1.2.3.4:80'), '1.2.3.4/32 port 80');
    assert.equal(range('10.0.0.0/8'), '10.0.0.0/8 port null');
    assert.equal(range('10.0.0.0/8:443'), '10.0.0.0/8 port 443');
    assert.equal(range('[2001:db8::1]'), '2001:db8::1/128 port null');
    assert.equal(range('[2001:db8::1]:443'), '2001:db8::1/128 port 443');
    assert.equal(range('2001:db8::1'), '2001:db8::1/128 port null');
    assert.equal(range('2001:db8::/32'), '2001:db8::/32 port null');
    assert.equal(range('[2001:db8::/32]:443'), '2001:db8::/32 port 443');
    assert.equal(range('::1'), '::1/128 port null');
    // A mapped address is the IPv4 address it reaches.
    assert.equal(range('::ffff:10.0.0.0/104'), '10.0.0.0/8 port null');
  });

  it('refuses anything else, naming the entry and saying why', () => {
    const cases: [string, RegExp][] = [
      ['', /it is empty/],
      ['   ', /it is empty/],
      ['exa mple.com', /not a host name/],
      ['http://example.com', /port/],
      ['example.com/path', /not a host name/],
      ['*', /wildcard stands only at the start/],
      ['foo.*.com', /wildcard stands only at the start/],
      ['*example.com', /wildcard stands only at the start/],
      ['*.*.example.com', /wildcard stands only at the start/],
      ['example.com:0', /port "0" is not a number from 1 to 65535/],
      ['example.com:65536', /port "65536"/],
      ['example.com:', /port ""/],
      ['example.com:http', /port "http"/],
      ['10.1.2.3/8', /bits set past its \/8: the range is 10\.0\.0\.0\/8/],
      ['1.2.3.4/33', /not an IP address or CIDR range/],
      ['999.1.1.1', /not an IP address or CIDR range/],
      ['010.0.0.1', /not an IP address or CIDR range/],
      ['[1.2.3.4]', /only an IPv6 address goes in brackets/],
      ['[example.com]:443', /only an IPv6 address goes in brackets/],
      ['fe80::1%eth0', /not an IP address or CIDR range/],
      ['2001:db8::1:443:x', /not an IP address or CIDR range/],
      ['foo.123', /not a host name/],
      [`${'a'.repeat(64)}.com`, /not a host name/],
    ];
    for (const [entry, why] of cases) {
      assert.throws(() => parseRule(entry), (error: Error) => {
        assert.ok(error.message.startsWith(`${JSON.stringify(entry)} is not a destination: `), error.message);
        assert.match(error.message, why);
        return true;
      });
    }
  });
});

describe('checkRules', () => {
  it('accepts rules that all parse', () => {
    checkRules({ allow: ['example.com', '*.example.org:443', '10.0.0.0/8', '[::1]:8080'], deny: ['evil.example.com'] });
  });

  it('names every bad entry and its list', () => {
    assert.throws(() => checkRules({ allow: ['ok.example', 'bad entry'], deny: ['10.1.2.3/8'] }), {
      message: 'allow: "bad entry" is not a destination: it is not a host name, an IP address or a CIDR range; deny: "10.1.2.3/8" is not a destination: the address has bits set past its /8: the range is 10.0.0.0/8',
    });
  });
});

describe('decide: names', () => {
  it('allows a listed name at the addresses it resolves to, whatever its case or trailing dot', async () => {
    assert.deepEqual(await allowedAt({ allow: ['example.com'] }, 'example.com'), ['93.184.215.14']);
    assert.deepEqual(await allowedAt({ allow: ['example.com'] }, 'EXAMPLE.com.'), ['93.184.215.14']);
    assert.deepEqual(await allowedAt({ allow: ['example.org'] }, 'example.org'), ['2606:2800:21f::1']);
  });

  it('refuses a name that is not listed, without resolving it', async () => {
    const lookup = fakeLookup({ 'other.example': ['93.184.215.14'] });
    assert.equal(await refusedBy({ allow: ['example.com'] }, 'other.example', 443, lookup), 'not in allowlist');
    assert.deepEqual(lookup.asked, []);
  });

  it('matches a wildcard to subdomains at any depth, never to the name itself', async () => {
    await allowedAt({ allow: ['*.example.com'] }, 'api.example.com');
    await allowedAt({ allow: ['*.example.com'] }, 'a.b.example.com');
    assert.equal(await refusedBy({ allow: ['*.example.com'] }, 'example.com'), 'not in allowlist');
    assert.equal(await refusedBy({ allow: ['*.example.com'] }, 'notexample.com'), 'not in allowlist');
  });

  it('matches a port only when the entry names it', async () => {
    await allowedAt({ allow: ['example.com:443'] }, 'example.com', 443);
    assert.equal(await refusedBy({ allow: ['example.com:443'] }, 'example.com', 80), 'not in allowlist');
    await allowedAt({ allow: ['*.example.com:8443'] }, 'api.example.com', 8443);
    assert.equal(await refusedBy({ allow: ['*.example.com:8443'] }, 'api.example.com', 443), 'not in allowlist');
    await allowedAt({ allow: ['example.com'] }, 'example.com', 22);
  });

  it('checks deny first, and names the deny entry', async () => {
    const rules = { allow: ['*.example.com', 'example.com'], deny: ['a.b.example.com', '*.b.example.com:443'] };
    assert.equal(await refusedBy(rules, 'a.b.example.com'), 'deny a.b.example.com');
    assert.equal(await refusedBy({ allow: ['*.example.com'], deny: ['*.b.example.com'] }, 'a.b.example.com'), 'deny *.b.example.com');
    assert.equal(await refusedBy({ allow: ['*.example.com'], deny: ['*.b.example.com:443'] }, 'a.b.example.com', 443), 'deny *.b.example.com:443');
    await allowedAt({ allow: ['*.example.com'], deny: ['*.b.example.com:443'] }, 'a.b.example.com', 80);
    await allowedAt(rules, 'api.example.com');
  });

  it('refuses a name whose addresses a deny range covers', async () => {
    assert.equal(await refusedBy({ allow: ['denied-net.example.com'], deny: ['203.0.113.0/24'] }, 'denied-net.example.com'), 'deny 203.0.113.0/24');
  });

  it('refuses what is not a host name', async () => {
    for (const host of ['', 'bad host', 'a/b', '127.1', '0x7f.1', `${'a'.repeat(64)}.example.com`]) {
      assert.equal(await refusedBy({ allow: ['*.example.com'] }, host), 'not a host name', JSON.stringify(host));
    }
  });

  it('reports a name that does not resolve as unresolved, not as refused', async () => {
    assert.deepEqual(await decision({ allow: ['*.example.com'] }, 'missing.example.com'), { verdict: 'unresolved', reason: 'ENOTFOUND' });
    assert.deepEqual(await decision({ allow: ['*.example.com'] }, 'empty.example.com'), { verdict: 'unresolved', reason: 'no addresses' });
  });

  it('refuses an invalid port', async () => {
    assert.equal(await refusedBy({ allow: ['example.com'] }, 'example.com', 0), 'port 0 is not a port');
  });
});

describe('decide: addresses', () => {
  it('allows an IP literal only when an address entry lists it', async () => {
    assert.deepEqual(await allowedAt({ allow: ['93.184.215.14'] }, '93.184.215.14'), ['93.184.215.14']);
    await allowedAt({ allow: ['93.184.215.0/24:443'] }, '93.184.215.99', 443);
    assert.equal(await refusedBy({ allow: ['93.184.215.0/24:443'] }, '93.184.215.99', 80), 'not in allowlist');
    assert.equal(await refusedBy({ allow: ['example.com', '*.example.com'] }, '93.184.215.14'), 'not in allowlist');
    await allowedAt({ allow: ['[2001:db8::1]:443'] }, '2001:db8::1', 443);
    await allowedAt({ allow: ['2001:db8::/32'] }, '2001:db8:ffff::9', 22);
    assert.equal(await refusedBy({ allow: ['2001:db8::/32'] }, '2001:db9::1'), 'not in allowlist');
  });

  it('allows a listed private address, since listing it is explicit', async () => {
    await allowedAt({ allow: ['127.0.0.1'] }, '127.0.0.1');
    await allowedAt({ allow: ['10.0.0.0/8'] }, '10.9.9.9');
  });

  it('checks deny first for literals, in either IPv6 form of an IPv4 address', async () => {
    assert.equal(await refusedBy({ allow: ['10.0.0.0/8'], deny: ['10.0.0.5'] }, '10.0.0.5'), 'deny 10.0.0.5');
    assert.equal(await refusedBy({ allow: ['::/0', '10.0.0.0/8'], deny: ['10.0.0.0/24'] }, '::ffff:10.0.0.5'), 'deny 10.0.0.0/24');
    assert.deepEqual(await allowedAt({ allow: ['10.0.0.0/8'] }, '::ffff:10.0.0.5'), ['10.0.0.5']);
  });
});

describe('decide: the rebinding guard', () => {
  it('refuses a listed name that resolves to a special address', async () => {
    assert.equal(await refusedBy({ allow: ['*.example.com'] }, 'internal.example.com'), 'resolves to private address 10.1.2.3');
    assert.equal(await refusedBy({ allow: ['*.example.com'] }, 'metadata.example.com'), 'resolves to cloud metadata address 169.254.169.254');
    assert.equal(await refusedBy({ allow: ['*.example.com'] }, 'mapped.example.com'), 'resolves to loopback address 127.0.0.1');
    assert.equal(await refusedBy({ allow: ['*.example.com'] }, 'cgnat.example.com'), 'resolves to CGNAT address 100.64.0.7');
  });

  it('refuses the name when any one of its addresses is special', async () => {
    assert.equal(await refusedBy({ allow: ['rebound.example.com'] }, 'rebound.example.com'), 'resolves to private address 10.1.2.3');
  });

  it('allows a special address that an address entry covers (a mirror on the corporate network)', async () => {
    assert.deepEqual(await allowedAt({ allow: ['mirror.corp.example', '10.0.0.0/8'] }, 'mirror.corp.example'), ['10.20.30.40']);
    assert.deepEqual(await allowedAt({ allow: ['rebound.example.com', '10.1.2.3:443'] }, 'rebound.example.com'), ['93.184.215.17', '10.1.2.3']);
    assert.equal(await refusedBy({ allow: ['rebound.example.com', '10.1.2.3:443'] }, 'rebound.example.com', 80), 'resolves to private address 10.1.2.3');
  });

  it('refuses localhost through the real resolver, unless loopback is listed', async () => {
    assert.match(await refusedBy({ allow: ['localhost'] }, 'localhost', 80, systemLookup), /^resolves to loopback address (127\.0\.0\.1|::1)$/);
    const addresses = await allowedAt({ allow: ['localhost', '127.0.0.0/8', '::1'] }, 'localhost', 80, systemLookup);
    assert.ok(addresses.length > 0 && addresses.every((address) => address === '::1' || address.startsWith('127.')), String(addresses));
  });
});

describe('addresses', () => {
  it('classifies special addresses, IPv4-mapped forms included', () => {
    const cases: [string, string | null][] = [
      ['8.8.8.8', null],
      ['2606:4700::1111', null],
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['127.0.0.1', 'loopback'],
      ['127.255.0.9', 'loopback'],
      ['::1', 'loopback'],
      ['10.0.0.1', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', null],
      ['192.168.1.1', 'private'],
      ['fc00::1', 'private'],
      ['fd12:3456::1', 'private'],
      ['169.254.1.1', 'link-local'],
      ['fe80::1', 'link-local'],
      ['169.254.169.254', 'cloud metadata'],
      ['fd00:ec2::254', 'cloud metadata'],
      ['100.100.100.200', 'cloud metadata'],
      ['100.64.0.1', 'CGNAT'],
      ['100.127.255.255', 'CGNAT'],
      ['100.128.0.1', null],
      ['224.0.0.1', 'multicast'],
      ['ff02::1', 'multicast'],
      ['255.255.255.255', 'broadcast'],
      ['240.0.0.1', 'reserved'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['::ffff:7f00:1', 'loopback'],
      ['::ffff:169.254.169.254', 'cloud metadata'],
      ['::ffff:10.1.2.3', 'private'],
      ['::ffff:8.8.8.8', null],
    ];
    for (const [text, kind] of cases) {
      const address = parseIp(text);
      assert.ok(address, text);
      assert.equal(specialKind(address), kind, text);
    }
  });

  it('parses only plain addresses', () => {
    for (const text of ['', 'localhost', '1.2.3', '01.2.3.4', '1.2.3.4.5', 'fe80::1%eth0', '[::1]', '2001:db8::1::2']) assert.equal(parseIp(text), null, text);
  });

  it('writes IPv6 addresses in their canonical short form', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['::', '::'],
      ['::1', '::1'],
      ['1::', '1::'],
      ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
      ['::ffff:1.2.3.4', '1.2.3.4'],
    ];
    for (const [text, canonical] of cases) assert.equal(formatIp(parseIp(text) ?? assert.fail(text)), canonical);
  });
});
