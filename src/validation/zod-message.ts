// How a zod validation failure is told to a client: the field as a user writes it (files[2].mode)
// and the reason, for every schema at the edge (build requests, checkin bodies).
import type { z } from 'zod';

/** zod's issue path rendered the way a user writes it: files[2].mode */
function fieldName(issuePath: readonly PropertyKey[]): string {
  let out = '';
  for (const part of issuePath) {
    out += typeof part === 'number' ? `[${part}]` : `${out ? '.' : ''}${String(part)}`;
  }
  return out || 'body';
}

/** The first five issues, each as "field: reason", joined with "; ". */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      if (issue.code === 'unrecognized_keys') {
        const where = issue.path.length ? `${fieldName(issue.path)}: ` : '';
        return `${where}unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
      }
      return `${fieldName(issue.path)}: ${issue.message}`;
    })
    .join('; ');
}
