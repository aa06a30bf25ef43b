// Prometheus metrics in the text exposition format. Counters and the build-duration histogram are
// kept here; gauges (builds by state, queue depth, checkins) are read from their owners at scrape time.

const DURATION_BUCKETS = [1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

function labels(obj: Record<string, string | number>): string {
  const parts = Object.entries(obj).map(([k, v]) => `${k}="${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export interface GaugeSources {
  buildsByState(): Record<string, number>;
  queueDepth(): number;
  buildsRunning(): number;
  checkins(): number;
}

export class Metrics {
  private readonly httpRequests = new Map<string, number>();
  private readonly artifactBytes = new Map<string, number>();
  private readonly durationCounts = new Map<string, number[]>();
  private readonly durationSums = new Map<string, number>();
  private sources: GaugeSources | null = null;

  setSources(sources: GaugeSources): void {
    this.sources = sources;
  }

  countRequest(method: string, route: string, status: number): void {
    const key = `${method}\u0000${route}\u0000${status}`;
    this.httpRequests.set(key, (this.httpRequests.get(key) ?? 0) + 1);
  }

  countArtifactBytes(file: string, bytes: number): void {
    this.artifactBytes.set(file, (this.artifactBytes.get(file) ?? 0) + bytes);
  }

  observeBuild(result: 'completed' | 'failed', seconds: number): void {
    const counts = this.durationCounts.get(result) ?? new Array(DURATION_BUCKETS.length + 1).fill(0);
    const idx = DURATION_BUCKETS.findIndex((b) => seconds <= b);
    counts[idx === -1 ? DURATION_BUCKETS.length : idx]++;
    this.durationCounts.set(result, counts);
    this.durationSums.set(result, (this.durationSums.get(result) ?? 0) + seconds);
  }

  render(): string {
    const out: string[] = [];
    const s = this.sources;
    if (s) {
      out.push('# HELP uod_builds Builds known to the service, by state.', '# TYPE uod_builds gauge');
      for (const [state, n] of Object.entries(s.buildsByState())) out.push(`uod_builds${labels({ state })} ${n}`);
      out.push('# HELP uod_build_queue_depth Builds waiting for a build slot.', '# TYPE uod_build_queue_depth gauge');
      out.push(`uod_build_queue_depth ${s.queueDepth()}`);
      out.push('# HELP uod_builds_running Builds executing now.', '# TYPE uod_builds_running gauge');
      out.push(`uod_builds_running ${s.buildsRunning()}`);
      out.push('# HELP uod_checkins Registered checkin ids.', '# TYPE uod_checkins gauge');
      out.push(`uod_checkins ${s.checkins()}`);
    }

    out.push('# HELP uod_build_duration_seconds Wall time of finished builds.', '# TYPE uod_build_duration_seconds histogram');
    for (const [result, counts] of this.durationCounts) {
      let cumulative = 0;
      DURATION_BUCKETS.forEach((b, i) => {
        cumulative += counts[i] as number;
        out.push(`uod_build_duration_seconds_bucket${labels({ result, le: b })} ${cumulative}`);
      });
      cumulative += counts[DURATION_BUCKETS.length] as number;
      out.push(`uod_build_duration_seconds_bucket${labels({ result, le: '+Inf' })} ${cumulative}`);
      out.push(`uod_build_duration_seconds_sum${labels({ result })} ${this.durationSums.get(result) ?? 0}`);
      out.push(`uod_build_duration_seconds_count${labels({ result })} ${cumulative}`);
    }

    out.push('# HELP uod_artifact_bytes_served_total Artifact body bytes written to clients.', '# TYPE uod_artifact_bytes_served_total counter');
    for (const [file, n] of this.artifactBytes) out.push(`uod_artifact_bytes_served_total${labels({ file })} ${n}`);

    out.push('# HELP uod_http_requests_total HTTP requests answered, by route and status.', '# TYPE uod_http_requests_total counter');
    for (const [key, n] of this.httpRequests) {
      const [method, route, status] = key.split('\u0000') as [string, string, string];
      out.push(`uod_http_requests_total${labels({ method, route, status })} ${n}`);
    }
    return out.join('\n') + '\n';
  }
}
