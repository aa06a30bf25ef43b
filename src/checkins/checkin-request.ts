// What a checkin id and a checkin body may be.
import net from 'node:net';
import { z } from 'zod';
import { describeZodError } from '../validation/zod-message.js';

export const CHECKIN_ID = /^[A-Za-z0-9._-]{1,128}$/;
const MAX_ADDRESSES = 256;

const schema = z.strictObject({
  addresses: z
    .array(z.string().refine((a) => net.isIP(a) !== 0, 'must be an IPv4 or IPv6 address'))
    .max(MAX_ADDRESSES, `must have at most ${MAX_ADDRESSES} entries`),
});

export class CheckinRequestError extends Error {}

/** Returns the addresses of a valid body, de-duplicated in first-seen order; throws naming the field. */
export function parseCheckinBody(body: unknown): string[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new CheckinRequestError('body: must be a JSON object like {"addresses": ["192.0.2.10"]}');
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new CheckinRequestError(describeZodError(parsed.error));
  return [...new Set(parsed.data.addresses)];
}
