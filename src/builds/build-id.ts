// The build id: sha256 over the normalized request, the referenced base files' digests and the builder
// version, so a replaced base image or a changed pipeline is never answered with a stale artifact.
import { createHash } from 'node:crypto';
import { canonicalJson, type NormalizedBuildRequest } from './request.js';

/** Bump whenever the pipeline's output for the same inputs changes. */
export const BUILDER_VERSION = 'uki-on-demand/2';

export const BUILD_ID = /^[0-9a-f]{64}$/;

/**
 * @param variant the pipeline's own settings that change its bytes (the UKI writer), when it has any;
 *   the same request built by differently configured services must not share an id.
 */
export function computeBuildId(request: NormalizedBuildRequest, bases: { kernelSha256: string; initramfsSha256: string }, variant?: string): string {
  const document = canonicalJson(variant === undefined ? { builder: BUILDER_VERSION, request, bases } : { builder: BUILDER_VERSION, request, bases, variant });
  return createHash('sha256').update(document).digest('hex');
}
