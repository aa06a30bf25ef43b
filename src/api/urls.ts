// Absolute URLs handed to clients: status URLs on the plain listener, artifact URLs on the listener the
// build asked for. Artifact URLs end in the file name (BMCs insist on ".iso") and carry no query.
import type { BuildRecord } from '../builds/registry.js';
import { ARTIFACT_FILES } from '../builds/pipeline.js';

export class PublicUrls {
  constructor(private publicUrl: string, private publicTlsUrl: string | null) {}

  /** Used when the listener was asked for port 0 and the defaults must name the port actually bound. */
  rebase(publicUrl: string, publicTlsUrl: string | null): void {
    this.publicUrl = publicUrl;
    this.publicTlsUrl = publicTlsUrl;
  }

  get hasTls(): boolean {
    return this.publicTlsUrl !== null;
  }

  buildStatus(id: string): string {
    return `${this.publicUrl}/api/v1/builds/${id}`;
  }

  artifacts(record: BuildRecord): { ukiUrl: string; isoUrl: string } {
    const base = record.request.tlsArtifacts && this.publicTlsUrl ? this.publicTlsUrl : this.publicUrl;
    return {
      ukiUrl: `${base}/artifacts/${record.id}/${ARTIFACT_FILES.uki}`,
      isoUrl: `${base}/artifacts/${record.id}/${ARTIFACT_FILES.iso}`,
    };
  }
}
