// RFC 9110 conditional and range requests, case by case: which status a GET gets and which bytes.
import { describe, expect, test } from 'vitest';
import { evaluateConditional, parseHttpDate, type ConditionalFields, type ConditionalOutcome } from '../../src/api/http-conditional.js';

const SIZE = 10_000;
const ETAG = '"abc"';
const LAST_MODIFIED = 'Mon, 15 Jan 2024 10:30:00 GMT';
const rep = { size: SIZE, etag: ETAG, lastModifiedMs: Date.UTC(2024, 0, 15, 10, 30, 0) };
const NOW = Date.UTC(2025, 5, 1);
const EARLIER = 'Mon, 15 Jan 2024 10:29:59 GMT';
const LATER = 'Mon, 15 Jan 2024 10:30:01 GMT';

const full: ConditionalOutcome = { status: 200 };
const bytes = (start: number, end: number): ConditionalOutcome => ({ status: 206, start, end });
const unsatisfiable = (reason: string): ConditionalOutcome => ({ status: 416, reason });
const notModified: ConditionalOutcome = { status: 304 };

function check(fields: ConditionalFields, expected: ConditionalOutcome) {
  expect(evaluateConditional(fields, rep, NOW)).toEqual(expected);
}

describe('Range (§14.1.2, §14.2)', () => {
  test.each<[string, ConditionalOutcome]>([
    ['bytes=0-499', bytes(0, 499)],
    ['bytes=500-999', bytes(500, 999)],
    ['bytes=0-0', bytes(0, 0)],
    ['bytes=9999-9999', bytes(9999, 9999)],
    ['bytes=-500', bytes(9500, 9999)],
    ['bytes=-1', bytes(9999, 9999)],
    ['bytes=-10000', bytes(0, 9999)],
    ['bytes=-20000', bytes(0, 9999)],
    ['bytes=9500-', bytes(9500, 9999)],
    ['bytes=0-', bytes(0, 9999)],
    ['bytes=9990-20000', bytes(9990, 9999)],
    ['bytes=0-99999999999999999999999999', bytes(0, 9999)],
    ['bytes=-99999999999999999999999999', bytes(0, 9999)],
    ['BYTES=0-9', bytes(0, 9)],
    ['bytes = 1 - 2', bytes(1, 2)],
    ['bytes=0-9,', bytes(0, 9)],
    ['bytes=, 0-9', bytes(0, 9)],
  ])('%s → 206', (range, expected) => check({ range }, expected));

  test.each<[string, ConditionalOutcome]>([
    ['bytes=10000-', unsatisfiable('range starts at 10000, beyond the 10000-byte file')],
    ['bytes=10000-10005', unsatisfiable('range starts at 10000, beyond the 10000-byte file')],
    ['bytes=99999999999999999999999999-', unsatisfiable('range starts at 99999999999999999999999999, beyond the 10000-byte file')],
    ['bytes=-0', unsatisfiable('unsatisfiable suffix range for a 10000-byte file')],
    ['bytes=0-1,5-6', unsatisfiable('multiple ranges are not supported; request one range at a time')],
    ['bytes=0-1, -5', unsatisfiable('multiple ranges are not supported; request one range at a time')],
  ])('%s → 416', (range, expected) => check({ range }, expected));

  test.each([
    'bytes=5-1',
    'bytes=abc',
    'bytes=-',
    'bytes=',
    'bytes=,',
    'bytes=1-2-3',
    'bytes=1e3-',
    'bytes=0x10-',
    'bytes=+1-2',
    'bytes=0-1,5-x',
    'bytes=99999999999999999999999999-99999999999999999999999998',
    'items=0-1',
    'bytes',
    '0-1',
    '=0-1',
    '',
  ])('malformed or foreign unit %j is ignored → 200', (range) => check({ range }, full));

  test('a zero-length representation satisfies no range', () => {
    const empty = { ...rep, size: 0 };
    expect(evaluateConditional({ range: 'bytes=0-' }, empty, NOW)).toEqual(unsatisfiable('range starts at 0, beyond the 0-byte file'));
    expect(evaluateConditional({ range: 'bytes=-5' }, empty, NOW)).toEqual(unsatisfiable('unsatisfiable suffix range for a 0-byte file'));
  });
});

describe('If-Range (§13.1.5)', () => {
  test.each<[string, ConditionalOutcome]>([
    [ETAG, bytes(0, 9)],
    [` ${ETAG} `, bytes(0, 9)],
    ['W/"abc"', full],
    ['"other"', full],
    ['"abc", "other"', full],
    [LAST_MODIFIED, bytes(0, 9)],
    ['Monday, 15-Jan-24 10:30:00 GMT', bytes(0, 9)],
    ['Mon Jan 15 10:30:00 2024', bytes(0, 9)],
    [EARLIER, full],
    [LATER, full],
    ['not a validator', full],
    ['2024-01-15T10:30:00Z', full],
  ])('If-Range %j with a Range', (ifRange, expected) => check({ range: 'bytes=0-9', ifRange }, expected));

  test('without a Range, If-Range changes nothing', () => check({ ifRange: '"other"' }, full));
  test('a failed If-Range ignores even an unsatisfiable Range', () => check({ range: 'bytes=20000-', ifRange: '"other"' }, full));
  test('a holding If-Range leaves an unsatisfiable Range unsatisfiable', () =>
    check({ range: 'bytes=20000-', ifRange: ETAG }, unsatisfiable('range starts at 20000, beyond the 10000-byte file')));
});

describe('If-None-Match (§13.1.2): weak comparison', () => {
  test.each<[string, ConditionalOutcome]>([
    [ETAG, notModified],
    ['W/"abc"', notModified],
    ['*', notModified],
    ['"x", "abc"', notModified],
    ['"x",W/"abc" , "y"', notModified],
    ['"x,y", "abc"', notModified],
    [', "abc",', notModified],
    ['"x"', full],
    ['"x", W/"y"', full],
    ['"ABC"', full],
    ['abc', full],
    ['"abc', full],
    ['w/"abc"', full],
  ])('%j', (ifNoneMatch, expected) => check({ ifNoneMatch }, expected));

  test('a matching If-None-Match wins over a Range', () => check({ ifNoneMatch: ETAG, range: 'bytes=0-9' }, notModified));
  test('a non-matching If-None-Match lets the Range through', () => check({ ifNoneMatch: '"x"', range: 'bytes=0-9' }, bytes(0, 9)));
});

describe('If-Modified-Since (§13.1.3)', () => {
  test.each<[string, ConditionalOutcome]>([
    [LAST_MODIFIED, notModified],
    [LATER, notModified],
    ['Sat, 01 Jan 2050 00:00:00 GMT', notModified],
    ['Monday, 15-Jan-24 10:30:00 GMT', notModified],
    ['Mon Jan 15 10:30:00 2024', notModified],
    [EARLIER, full],
    ['Thu, 01 Jan 1970 00:00:00 GMT', full],
    ['99999', full],
    ['1', full],
    ['2050-01-01', full],
    ['mon, 15 jan 2024 10:30:00 gmt', full],
    ['Mon, 15 Jan 2024 10:30:00 UTC', full],
    ['Mon, 31 Feb 2024 10:30:00 GMT', full],
    ['Mon, 15 Jan 2024 24:00:00 GMT', full],
    ['garbage', full],
  ])('%j', (ifModifiedSince, expected) => check({ ifModifiedSince }, expected));

  test('is ignored when If-None-Match is present', () => {
    check({ ifNoneMatch: '"x"', ifModifiedSince: LATER }, full);
    check({ ifNoneMatch: ETAG, ifModifiedSince: EARLIER }, notModified);
  });
  test('a malformed If-None-Match counts as absent, so If-Modified-Since decides', () =>
    check({ ifNoneMatch: 'abc', ifModifiedSince: LATER }, notModified));
  test('a 304 wins over a Range', () => check({ ifModifiedSince: LATER, range: 'bytes=0-9' }, notModified));
  test('modified since: the Range is served', () => check({ ifModifiedSince: EARLIER, range: 'bytes=0-9' }, bytes(0, 9)));
});

describe('If-Match and If-Unmodified-Since (§13.1.1, §13.1.4): 412 first', () => {
  const failedMatch: ConditionalOutcome = { status: 412, reason: 'If-Match: no listed entity tag is the current one' };
  const failedUnmodified: ConditionalOutcome = { status: 412, reason: 'If-Unmodified-Since: modified since that date' };
  test.each<[ConditionalFields, ConditionalOutcome]>([
    [{ ifMatch: ETAG }, full],
    [{ ifMatch: '*' }, full],
    [{ ifMatch: '"x", "abc"' }, full],
    [{ ifMatch: 'W/"abc"' }, failedMatch],
    [{ ifMatch: '"x"' }, failedMatch],
    [{ ifMatch: 'abc' }, full],
    [{ ifUnmodifiedSince: LAST_MODIFIED }, full],
    [{ ifUnmodifiedSince: LATER }, full],
    [{ ifUnmodifiedSince: EARLIER }, failedUnmodified],
    [{ ifUnmodifiedSince: 'yesterday' }, full],
    [{ ifMatch: ETAG, ifUnmodifiedSince: EARLIER }, full],
    [{ ifMatch: '"x"', ifNoneMatch: ETAG }, failedMatch],
    [{ ifUnmodifiedSince: EARLIER, ifModifiedSince: LATER }, failedUnmodified],
    [{ ifMatch: '"x"', range: 'bytes=0-9' }, failedMatch],
    [{ ifMatch: ETAG, range: 'bytes=0-9' }, bytes(0, 9)],
    [{ ifMatch: ETAG, ifNoneMatch: ETAG }, notModified],
  ])('%j', (fields, expected) => check(fields, expected));
});

describe('precedence of §13.2.2 with every field present', () => {
  const all: ConditionalFields = {
    ifMatch: ETAG,
    ifUnmodifiedSince: LATER,
    ifNoneMatch: '"x"',
    ifModifiedSince: LATER,
    ifRange: ETAG,
    range: 'bytes=5-9',
  };
  test.each<[string, ConditionalFields, ConditionalOutcome]>([
    ['all hold: the range is served', all, bytes(5, 9)],
    ['If-Match fails first', { ...all, ifMatch: '"x"', ifNoneMatch: ETAG }, { status: 412, reason: 'If-Match: no listed entity tag is the current one' }],
    ['If-None-Match matches next', { ...all, ifNoneMatch: ETAG }, notModified],
    ['If-Range fails last', { ...all, ifRange: '"x"' }, full],
  ])('%s', (_name, fields, expected) => check(fields, expected));
});

describe('parseHttpDate (§5.6.7)', () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37);
  test.each<[string, number, number | null]>([
    ['Sun, 06 Nov 1994 08:49:37 GMT', NOW, t],
    ['Sunday, 06-Nov-94 08:49:37 GMT', NOW, t],
    ['Sun Nov  6 08:49:37 1994', NOW, t],
    [' Sun, 06 Nov 1994 08:49:37 GMT ', NOW, t],
    ['Thu, 01 Jan 1970 00:00:00 GMT', NOW, 0],
    ['Sat, 01 Jan 0050 00:00:00 GMT', NOW, Date.parse('0050-01-01T00:00:00Z')],
    // two-digit years: more than 50 years ahead means the past century (§5.6.7)
    ['Sunday, 06-Nov-94 08:49:37 GMT', Date.UTC(2060, 0, 1), Date.UTC(2094, 10, 6, 8, 49, 37)],
    ['Sunday, 06-Nov-30 08:49:37 GMT', Date.UTC(2025, 0, 1), Date.UTC(2030, 10, 6, 8, 49, 37)],
    ['Sunday, 06-Nov-80 08:49:37 GMT', Date.UTC(2025, 0, 1), Date.UTC(1980, 10, 6, 8, 49, 37)],
    ['Thu, 29 Feb 2024 00:00:00 GMT', NOW, Date.UTC(2024, 1, 29)],
    ['Thu, 29 Feb 2023 00:00:00 GMT', NOW, null],
    ['Sun, 00 Nov 1994 08:49:37 GMT', NOW, null],
    ['Sun, 06 Nov 1994 08:60:37 GMT', NOW, null],
    ['Sun, 6 Nov 1994 08:49:37 GMT', NOW, null],
    ['Sun, 06 nov 1994 08:49:37 GMT', NOW, null],
    ['Sun, 06 Nov 1994 08:49:37 +0000', NOW, null],
    ['06 Nov 1994 08:49:37 GMT', NOW, null],
    ['1994-11-06T08:49:37Z', NOW, null],
    ['784111777', NOW, null],
    ['', NOW, null],
  ])('%j (now %d) → %s', (text, now, expected) => expect(parseHttpDate(text, now)).toBe(expected));
});
