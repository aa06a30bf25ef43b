// Absolute URLs handed to clients: status URLs on the plain listener, artifact URLs on the listener the
// build asked for. Artifact URLs end in the file name (BMCs insist on ".iso") and carry no query.
import type { BuildRecord } from '../builds/registry.js';
import { ARTIFACT_FILES } from '../image/artifacts.js';
import { HttpError } from './errors.js';

export interface UrlBases {
  publicUrl: string;
  publicTlsUrl: string | null;
}

export class PublicUrls {
  private bases: UrlBases | null = null;

  /** `publicUrl`/`publicTlsUrl` as configured (null: name the listener); `tls`: a TLS listener is configured. */
  constructor(private readonly configured: { publicUrl: string | null; publicTlsUrl: string | null; tls: boolean }) {}

  /**
   * Called once, when every listener is bound (addresses as HOST:PORT). A base not configured names the
   * address its listener actually bound, so a port-0 listener hands out the port it got.
   */
  resolve(bound: { http: string; https: string | null }): UrlBases {
    if (this.bases) throw new Error('public URLs are resolved once');
    const { publicUrl, publicTlsUrl } = this.configured;
    this.bases = {
      publicUrl: publicUrl ?? `http://${bound.http}`,
      publicTlsUrl: bound.https === null ? null : (publicTlsUrl ?? `https://${bound.https}`),
    };
    return this.bases;
  }

  get hasTls(): boolean {
    return this.configured.tls;
  }

  buildStatus(id: string): string {
    return `${this.resolved().publicUrl}/api/v1/builds/${id}`;
  }

  artifacts(record: BuildRecord): { ukiUrl: string; isoUrl: string } {
    const { publicUrl, publicTlsUrl } = this.resolved();
    const base = record.request.tlsArtifacts && publicTlsUrl ? publicTlsUrl : publicUrl;
    return {
      ukiUrl: `${base}/artifacts/${record.id}/${ARTIFACT_FILES.uki}`,
      isoUrl: `${base}/artifacts/${record.id}/${ARTIFACT_FILES.iso}`,
    };
  }

  // One listener accepts requests while the next is still being bound; until all are, there is no
  // address to name.
  private resolved(): UrlBases {
    if (!this.bases) throw new HttpError(503, 'starting: the listeners are not all bound yet; retry');
    return this.bases;
  }
}
