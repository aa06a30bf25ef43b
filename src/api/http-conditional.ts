// RFC 9110 conditional requests (§13) and byte ranges (§14) for one static representation: which
// status a GET or HEAD gets and which bytes it carries, from the request's header values and the
// representation's validators. Pure: no I/O, no node:http types; the clock is a parameter.
//
// Decisions where the RFC leaves a choice:
// - One range per request. A satisfiable multi-range request is refused with 416 and a message
//   rather than answered with multipart/byteranges (BMC virtual media and UEFI HTTP Boot read one
//   range at a time) or with the whole file (hundreds of MB the client did not ask for).
// - A Range header that cannot be parsed, or names a unit other than bytes, is ignored (§14.2): 200.
// - HEAD is evaluated exactly like GET, Range included, so it answers the headers GET would.
// - A syntactically invalid If-Match / If-None-Match, or a date that is not an HTTP-date, is ignored
//   as if the field were absent.

export interface Representation {
  size: number;
  /** The strong entity tag, quoted as in the ETag field: `"…"`. */
  etag: string;
  /** Last-Modified as milliseconds since the epoch, a whole number of seconds. */
  lastModifiedMs: number;
}

/** The request's field values (absent fields undefined). */
export interface ConditionalFields {
  range?: string;
  ifRange?: string;
  ifMatch?: string;
  ifNoneMatch?: string;
  ifModifiedSince?: string;
  ifUnmodifiedSince?: string;
}

export type ConditionalOutcome =
  | { status: 200 }
  | { status: 206; start: number; end: number }
  | { status: 304 }
  | { status: 412; reason: string }
  | { status: 416; reason: string };

/** The precedence of RFC 9110 §13.2.2, then the Range evaluation of §14.2. */
export function evaluateConditional(fields: ConditionalFields, rep: Representation, nowMs: number): ConditionalOutcome {
  const ifMatch = parseEntityTagList(fields.ifMatch);
  if (ifMatch !== null) {
    if (!matchesAny(ifMatch, rep.etag, 'strong')) return { status: 412, reason: 'If-Match: no listed entity tag is the current one' };
  } else {
    const since = parseHttpDate(fields.ifUnmodifiedSince, nowMs);
    if (since !== null && rep.lastModifiedMs > since) return { status: 412, reason: 'If-Unmodified-Since: modified since that date' };
  }
  const ifNoneMatch = parseEntityTagList(fields.ifNoneMatch);
  if (ifNoneMatch !== null) {
    if (matchesAny(ifNoneMatch, rep.etag, 'weak')) return { status: 304 };
  } else {
    const since = parseHttpDate(fields.ifModifiedSince, nowMs);
    if (since !== null && rep.lastModifiedMs <= since) return { status: 304 };
  }
  if (fields.range === undefined) return { status: 200 };
  if (fields.ifRange !== undefined && !ifRangeHolds(fields.ifRange, rep, nowMs)) return { status: 200 };
  return evaluateRange(fields.range, rep.size);
}

type EntityTag = { weak: boolean; opaque: string };

/** `*` or a list of entity tags (§8.8.3); null when absent or malformed. */
function parseEntityTagList(value: string | undefined): '*' | EntityTag[] | null {
  if (value === undefined) return null;
  if (value.trim() === '*') return '*';
  const tags: EntityTag[] = [];
  // Empty list elements are allowed (§5.6.1.2); a quoted tag may itself contain commas.
  const element = /[ \t]*(?:(W\/)?"([\x21\x23-\x7e\x80-\xff]*)")?[ \t]*(,|$)/y;
  for (;;) {
    const start = element.lastIndex;
    const m = element.exec(value);
    if (!m) return null;
    if (m[2] !== undefined) tags.push({ weak: m[1] !== undefined, opaque: m[2] });
    if (m[3] === '' || element.lastIndex === start) break;
  }
  return tags.length ? tags : null;
}

/** Strong comparison needs both tags strong; weak comparison looks at the opaque part only (§8.8.3.2). */
function matchesAny(list: '*' | EntityTag[], current: string, comparison: 'strong' | 'weak'): boolean {
  if (list === '*') return true;
  return list.some((t) => `"${t.opaque}"` === current && (comparison === 'weak' || !t.weak));
}

/** §13.1.5: an entity tag must match strongly (a weak one never does); a date must equal Last-Modified. */
function ifRangeHolds(value: string, rep: Representation, nowMs: number): boolean {
  const v = value.trim();
  if (v.startsWith('"') || v.startsWith('W/')) return v === rep.etag;
  return parseHttpDate(v, nowMs) === rep.lastModifiedMs;
}

/** A single byte range (§14.1.2), clipped to the representation. Positions are compared exactly, however long. */
function evaluateRange(value: string, size: number): ConditionalOutcome {
  const m = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=(.*)$/.exec(value);
  if (!m || (m[1] as string).toLowerCase() !== 'bytes') return { status: 200 };
  const specs: Array<{ first: bigint | null; last: bigint | null }> = [];
  // Empty list elements are allowed (§5.6.1.2).
  for (const spec of (m[2] as string).split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const r = /^(\d*)\s*-\s*(\d*)$/.exec(spec);
    if (!r || (r[1] === '' && r[2] === '')) return { status: 200 };
    const first = r[1] === '' ? null : BigInt(r[1] as string);
    const last = r[2] === '' ? null : BigInt(r[2] as string);
    if (first !== null && last !== null && last < first) return { status: 200 };
    specs.push({ first, last });
  }
  if (specs.length === 0) return { status: 200 };
  if (specs.length > 1) return { status: 416, reason: 'multiple ranges are not supported; request one range at a time' };
  const { first, last } = specs[0] as { first: bigint | null; last: bigint | null };
  const length = BigInt(size);
  if (first === null) {
    const suffix = last as bigint;
    if (suffix === 0n || size === 0) return { status: 416, reason: `unsatisfiable suffix range for a ${size}-byte file` };
    return { status: 206, start: suffix >= length ? 0 : Number(length - suffix), end: size - 1 };
  }
  if (first >= length) return { status: 416, reason: `range starts at ${first}, beyond the ${size}-byte file` };
  return { status: 206, start: Number(first), end: last === null || last >= length ? size - 1 : Number(last) };
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const LONG_DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const DAY = `(${DAYS.join('|')})`;
const MONTH = `(${MONTHS.join('|')})`;
const TIME = '(\\d\\d):(\\d\\d):(\\d\\d)';
const IMF_FIXDATE = new RegExp(`^${DAY}, (\\d\\d) ${MONTH} (\\d{4}) ${TIME} GMT$`);
const RFC850_DATE = new RegExp(`^(${LONG_DAYS.join('|')}), (\\d\\d)-${MONTH}-(\\d\\d) ${TIME} GMT$`);
const ASCTIME_DATE = new RegExp(`^${DAY} ${MONTH} ([ \\d]\\d) ${TIME} (\\d{4})$`);

/**
 * An HTTP-date (§5.6.7) in any of its three formats, as milliseconds since the epoch; null when
 * absent or not an HTTP-date. Stricter than Date.parse, which reads "1" or "2024" as dates.
 */
export function parseHttpDate(value: string | undefined, nowMs: number): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  let m = IMF_FIXDATE.exec(v);
  if (m) return utc(Number(m[4]), m[3] as string, Number(m[2]), m[5], m[6], m[7]);
  m = RFC850_DATE.exec(v);
  if (m) {
    // A two-digit year more than 50 years ahead means the most recent past year with those digits.
    const nowYear = new Date(nowMs).getUTCFullYear();
    let year = nowYear - (nowYear % 100) + Number(m[4]);
    if (year > nowYear + 50) year -= 100;
    else if (year <= nowYear - 50) year += 100;
    return utc(year, m[3] as string, Number(m[2]), m[5], m[6], m[7]);
  }
  m = ASCTIME_DATE.exec(v);
  if (m) return utc(Number(m[7]), m[2] as string, Number((m[3] as string).trim()), m[4], m[5], m[6]);
  return null;
}

function utc(year: number, month: string, day: number, hh: string | undefined, mm: string | undefined, ss: string | undefined): number | null {
  const [h, min, s] = [Number(hh), Number(mm), Number(ss)];
  if (h > 23 || min > 59 || s > 60) return null;
  const monthIndex = MONTHS.indexOf(month);
  // setUTCFullYear, unlike Date.UTC, keeps years below 100 as they are.
  const date = new Date(0);
  date.setUTCFullYear(year, monthIndex, day);
  // A day the month does not have (31 Feb) rolls over into the next month: not a date.
  if (date.getUTCMonth() !== monthIndex) return null;
  return date.getTime() + ((h * 60 + min) * 60 + s) * 1000;
}
