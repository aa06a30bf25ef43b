// What a lab runs besides its BMCs, and what they need: the service's certificates and the image web
// server's configuration.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (err) {
    throw new Error(`openssl ${args[0]}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
  }
}

/** A CA and a certificate for the service's address, so servers can verify their HTTPS checkins. */
export async function makeServiceCertificates(dir: string, address: string): Promise<{ ca: string; cert: string; key: string }> {
  const ca = join(dir, 'ca.pem'), caKey = join(dir, 'ca-key.pem'), cert = join(dir, 'service-cert.pem'), key = join(dir, 'service-key.pem'), csr = join(dir, 'service.csr');
  const ext = join(dir, 'service.ext');
  await openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3650', '-subj', '/CN=uki-on-demand lab CA', '-keyout', caKey, '-out', ca]);
  await openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${address}`, '-keyout', key, '-out', csr]);
  writeFileSync(ext, `subjectAltName=IP:${address}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
  await openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '3650', '-extfile', ext, '-out', cert]);
  return { ca, cert, key };
}

export function nginxConfig(stateDir: string, root: string, listen: string): string {
  return `# The lab's image web server: ${root}, read-only, with Range support.
# Workers run as root like the rest of the lab: the repository may sit where nobody else can read.
user root;
pid ${join(stateDir, 'nginx.pid')};
worker_processes 1;
events { worker_connections 256; }
http {
  access_log ${join(stateDir, 'nginx-access.log')};
  client_body_temp_path ${stateDir};
  proxy_temp_path ${stateDir};
  fastcgi_temp_path ${stateDir};
  uwsgi_temp_path ${stateDir};
  scgi_temp_path ${stateDir};
  types { application/octet-stream qcow2 img; }
  sendfile on;
  server {
    listen ${listen};
    root ${root};
    autoindex on;
    location / { limit_except GET { deny all; } }
  }
}
`;
}

