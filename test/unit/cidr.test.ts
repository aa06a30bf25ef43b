import { describe, expect, test } from 'vitest';
import { isAddressIn, normalizeAddress, parseCidr, parseCidrList } from '../../src/net/cidr.js';

describe('CIDR membership', () => {
  const trusted = parseCidrList('10.0.0.0/8,192.0.2.0/24,2001:db8::/32,::1/128');
  test.each([
    ['10.1.2.3', true],
    ['11.0.0.1', false],
    ['192.0.2.255', true],
    ['192.0.3.0', false],
    ['::ffff:10.1.2.3', true],
    ['::FFFF:192.0.2.1', true],
    ['2001:db8::1', true],
    ['2001:db9::1', false],
    ['::1', true],
    ['fe80::1%eth0', false],
    ['not-an-ip', false],
    // families never mix: these are the IPv6 spellings of trusted IPv4 numbers, and must not match
    ['::a01:203', false],
    ['::10.1.2.3', false],
  ])('%s → %s', (addr, expected) => expect(isAddressIn(addr, trusted)).toBe(expected));

  test('an IPv6 network does not admit IPv4 clients with the same numeric value', () => {
    expect(isAddressIn('0.0.0.1', parseCidrList('::/96'))).toBe(false);
    expect(isAddressIn('::1', parseCidrList('0.0.0.0/0'))).toBe(false);
    expect(isAddressIn('::ffff:1.2.3.4', parseCidrList('0.0.0.0/0'))).toBe(true);
  });

  test('rejects malformed CIDRs and host bits', () => {
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/not a valid CIDR|prefix/);
    expect(() => parseCidr('10.0.0.1/8')).toThrow(/host bits/);
    expect(() => parseCidr('banana')).toThrow(/not a valid CIDR/);
    expect(parseCidr('192.0.2.7')).toMatchObject({ family: 4, text: '192.0.2.7/32' });
  });

  test('normalizes mapped addresses', () => {
    expect(normalizeAddress('::ffff:127.0.0.1')).toBe('127.0.0.1');
    expect(normalizeAddress('FE80::1%eth0')).toBe('fe80::1');
  });
});

describe('IPv4-mapped networks in the trusted list', () => {
  test('::ffff:10.0.0.0/104 trusts the IPv4 clients it names, and not IPv6 ones', () => {
    const list = parseCidrList('::ffff:10.0.0.0/104');
    expect(isAddressIn('10.9.8.7', list)).toBe(true);
    expect(isAddressIn('::ffff:10.9.8.7', list)).toBe(true);
    expect(isAddressIn('11.0.0.1', list)).toBe(false);
    expect(isAddressIn('::10.9.8.7', list)).toBe(false);
    expect(isAddressIn('10.1.1.1', parseCidrList('::ffff:a00:0/104'))).toBe(true);
    expect(isAddressIn('192.0.2.1', parseCidrList('::ffff:0:0/96'))).toBe(true);
  });
  test('a mapped network shorter than /96 is refused', () => {
    expect(() => parseCidr('::ffff:0.0.0.0/80')).toThrow(/not a valid CIDR|at least 96|host bits/);
    expect(() => parseCidr('::ffff:0:0/80')).toThrow(/not a valid CIDR|at least 96|host bits/);
  });
});
