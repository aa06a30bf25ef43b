// The build request: strict schema (zod), semantic checks on the overlay tree, and the normalized
// form whose canonical JSON is hashed into the build id.
import path from 'node:path';
import { z } from 'zod';
import { BASE_ARTIFACT_NAME } from '../catalog/base-artifacts.js';
import { ARCHITECTURES, type Architecture } from '../image/architecture.js';
import { describeZodError } from '../validation/zod-message.js';

const MAX_CMDLINE_BYTES = 2048;
const MAX_PATH_BYTES = 4096;
const MAX_NAME_BYTES = 255;
const MAX_UID = 2 ** 32 - 1;

const STRICT_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const baseName = z
  .string()
  .max(MAX_NAME_BYTES, 'must be at most 255 characters')
  .regex(BASE_ARTIFACT_NAME, 'must be a plain file name ([A-Za-z0-9][A-Za-z0-9._-]*)');

const octalMode = z
  .string()
  .regex(/^0?[0-7]{1,4}$/, 'must be an octal string from "0" to "07777", e.g. "0644"');

const ownerId = z.number().int('must be an integer').min(0, 'must be >= 0').max(MAX_UID, `must be <= ${MAX_UID}`);

const overlayPath = z.string().superRefine((p, ctx) => {
  const problem = overlayPathProblem(p);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

function overlayPathProblem(p: string): string | null {
  if (p.includes('\0')) return 'must not contain NUL';
  if (!p.startsWith('/')) return 'must be absolute (start with "/")';
  if (p === '/') return 'must not be "/"';
  if (Buffer.byteLength(p) > MAX_PATH_BYTES) return `must be at most ${MAX_PATH_BYTES} bytes`;
  const segments = p.slice(1).split('/');
  if (segments.includes('..')) return 'must not contain ".."';
  if (path.posix.normalize(p) !== p || p.endsWith('/')) return 'must be normalized (no "//", "/./" or trailing "/")';
  if (segments.some((s) => Buffer.byteLength(s) > MAX_NAME_BYTES)) return `path components must be at most ${MAX_NAME_BYTES} bytes`;
  return null;
}

const fileSchema = z.strictObject({
  path: overlayPath,
  contentBase64: z.string().regex(STRICT_BASE64, 'must be valid base64').optional(),
  linkTarget: z
    .string()
    .min(1, 'must not be empty')
    .max(MAX_PATH_BYTES, `must be at most ${MAX_PATH_BYTES} bytes`)
    .refine((t) => !t.includes('\0'), 'must not contain NUL')
    .optional(),
  mode: octalMode.optional(),
  uid: ownerId.optional(),
  gid: ownerId.optional(),
  dirMode: octalMode.optional(),
  dirUid: ownerId.optional(),
  dirGid: ownerId.optional(),
});

const dirOverrideSchema = z.strictObject({
  path: overlayPath,
  mode: octalMode.optional(),
  uid: ownerId.optional(),
  gid: ownerId.optional(),
});

const schemaCache = new Map<number, ReturnType<typeof makeBuildRequestSchema>>();

/** The schema for a files/dirOverrides limit; built once per limit (building it costs more than using it). */
function buildRequestSchema(limits: { maxFiles: number }) {
  let schema = schemaCache.get(limits.maxFiles);
  if (!schema) {
    schema = makeBuildRequestSchema(limits);
    schemaCache.set(limits.maxFiles, schema);
  }
  return schema;
}

function makeBuildRequestSchema(limits: { maxFiles: number }) {
  return z.strictObject({
    kernel: baseName,
    initramfs: baseName,
    cmdline: z
      .string()
      .regex(/^[\x20-\x7e]*$/, 'must be printable ASCII (no NUL, newline or control characters)')
      .refine((c) => Buffer.byteLength(c) <= MAX_CMDLINE_BYTES, `must be at most ${MAX_CMDLINE_BYTES} bytes`),
    architecture: z.enum(ARCHITECTURES, { error: `must be ${ARCHITECTURES.map((a) => `"${a}"`).join(' or ')}` }),
    files: z.array(fileSchema).max(limits.maxFiles, `must have at most ${limits.maxFiles} entries`).optional(),
    dirOverrides: z.array(dirOverrideSchema).max(limits.maxFiles, `must have at most ${limits.maxFiles} entries`).optional(),
    tlsArtifacts: z.boolean().optional(),
  });
}

export interface NormalizedFile {
  path: string;
  type: 'file' | 'symlink';
  /** Present for regular files only. */
  contentBase64?: string;
  /** Present for symlinks only. */
  linkTarget?: string;
  mode: number;
  uid: number;
  gid: number;
  dirMode: number;
  dirUid: number;
  dirGid: number;
}

export interface NormalizedDirOverride {
  path: string;
  mode: number;
  uid: number;
  gid: number;
}

/** The request with every default applied and every list in canonical order: what the id hashes. */
export interface NormalizedBuildRequest {
  kernel: string;
  initramfs: string;
  cmdline: string;
  architecture: Architecture;
  files: NormalizedFile[];
  dirOverrides: NormalizedDirOverride[];
  tlsArtifacts: boolean;
}

export class RequestError extends Error {}

const storedMode = z.number().int().min(0).max(0o7777);
const storedOwner = z.number().int().min(0).max(MAX_UID);

/** The normalized form as it is read back from a build record: every field present, nothing else. */
export const normalizedBuildRequestSchema: z.ZodType<NormalizedBuildRequest> = z.strictObject({
  kernel: baseName,
  initramfs: baseName,
  cmdline: z.string(),
  architecture: z.enum(ARCHITECTURES),
  files: z.array(
    z.strictObject({
      path: overlayPath,
      type: z.enum(['file', 'symlink']),
      contentBase64: z.string().optional(),
      linkTarget: z.string().optional(),
      mode: storedMode,
      uid: storedOwner,
      gid: storedOwner,
      dirMode: storedMode,
      dirUid: storedOwner,
      dirGid: storedOwner,
    }),
  ),
  dirOverrides: z.array(z.strictObject({ path: overlayPath, mode: storedMode, uid: storedOwner, gid: storedOwner })),
  tlsArtifacts: z.boolean(),
});

const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

function isStrictBase64(text: string): boolean {
  // The regex admits non-zero padding bits ("QR=="), which decode to the same bytes as another string:
  // insist on the canonical spelling so one content has one id.
  return Buffer.from(text, 'base64').toString('base64') === text;
}

/**
 * Validates and normalizes a parsed JSON body. Throws RequestError naming the field on any problem.
 * Existence of the base artifacts is checked later, against the catalog.
 */
export function normalizeBuildRequest(body: unknown, limits: { maxFiles: number }): NormalizedBuildRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new RequestError('body: must be a JSON object');
  }
  const parsed = buildRequestSchema(limits).safeParse(body);
  if (!parsed.success) throw new RequestError(describeZodError(parsed.error));
  const req = parsed.data;

  const files: NormalizedFile[] = (req.files ?? []).map((f, i) => {
    const where = `files[${i}]`;
    const common = {
      path: f.path,
      uid: f.uid ?? 0,
      gid: f.gid ?? 0,
      dirMode: f.dirMode !== undefined ? parseInt(f.dirMode, 8) : 0o755,
      dirUid: f.dirUid ?? 0,
      dirGid: f.dirGid ?? 0,
    };
    if (f.linkTarget !== undefined) {
      // contentBase64 is documented as ignored for symlinks; it does not enter the id either.
      return { ...common, type: 'symlink', linkTarget: f.linkTarget, mode: f.mode !== undefined ? parseInt(f.mode, 8) : 0o777 };
    }
    if (f.contentBase64 === undefined) {
      throw new RequestError(`${where}.contentBase64: required for a regular file (or set linkTarget for a symlink)`);
    }
    if (!isStrictBase64(f.contentBase64)) throw new RequestError(`${where}.contentBase64: must be canonical base64`);
    return { ...common, type: 'file', contentBase64: f.contentBase64, mode: f.mode !== undefined ? parseInt(f.mode, 8) : 0o644 };
  });

  const dirOverrides: NormalizedDirOverride[] = (req.dirOverrides ?? []).map((d) => ({
    path: d.path,
    mode: d.mode !== undefined ? parseInt(d.mode, 8) : 0o755,
    uid: d.uid ?? 0,
    gid: d.gid ?? 0,
  }));

  checkTree(req.files ?? [], req.dirOverrides ?? []);

  return {
    kernel: req.kernel,
    initramfs: req.initramfs,
    cmdline: req.cmdline,
    architecture: req.architecture,
    files: files.sort(byPath),
    dirOverrides: dirOverrides.sort(byPath),
    tlsArtifacts: req.tlsArtifacts ?? false,
  };
}

/** Rejects duplicate paths and any file that would also have to be a directory. */
function checkTree(files: readonly { path: string }[], dirOverrides: readonly { path: string }[]): void {
  const fileIndex = new Map<string, number>();
  files.forEach((f, i) => {
    const earlier = fileIndex.get(f.path);
    if (earlier !== undefined) throw new RequestError(`files[${i}].path: duplicate of files[${earlier}].path "${f.path}"`);
    fileIndex.set(f.path, i);
  });
  const overrideIndex = new Map<string, number>();
  dirOverrides.forEach((d, i) => {
    const earlier = overrideIndex.get(d.path);
    if (earlier !== undefined) {
      throw new RequestError(`dirOverrides[${i}].path: duplicate of dirOverrides[${earlier}].path "${d.path}"`);
    }
    overrideIndex.set(d.path, i);
    const file = fileIndex.get(d.path);
    if (file !== undefined) throw new RequestError(`dirOverrides[${i}].path: "${d.path}" is also files[${file}], a file cannot be a directory`);
  });
  const entries: { path: string; where: string }[] = [
    ...files.map((f, i) => ({ path: f.path, where: `files[${i}]` })),
    ...dirOverrides.map((d, i) => ({ path: d.path, where: `dirOverrides[${i}]` })),
  ];
  for (const e of entries) {
    for (let p = path.posix.dirname(e.path); p !== '/'; p = path.posix.dirname(p)) {
      const file = fileIndex.get(p);
      if (file !== undefined) {
        throw new RequestError(`${e.where}.path: "${e.path}" lies under files[${file}] "${p}", which is a file, not a directory`);
      }
    }
  }
}

/** JSON with object keys sorted at every level: the byte form the id is computed over. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
