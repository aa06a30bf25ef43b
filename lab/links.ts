// The lab's side of a server's cables: set a NIC's link down or up, as pulling and plugging a cable
// would. The server's BMC process owns its machine, so the lab asks it (a lab-only endpoint beside
// its Redfish service, with the BMC's credentials) and its driver does it (QEMU: QMP set_link). The
// state lasts until the server's next power-on.
import type { LabServer } from './lab.js';
import { nsFetch } from './ns-http.js';

/** Sets link `nic` (0 = the first NIC, macs[0]) of a powered-on server down (`up` false) or up. */
export async function setLink(ns: string, server: LabServer, nic: number, up: boolean): Promise<void> {
  if (!Number.isInteger(nic) || nic < 0 || nic >= server.macs.length) {
    throw new Error(`${server.name}: no NIC ${nic} (it has ${server.macs.length})`);
  }
  const r = await nsFetch(ns, `${server.bmc.url}/lab/v1/links/${nic}`, { method: 'POST', auth: `${server.bmc.username}:${server.bmc.password}`, body: { up } });
  if (r.status !== 204) throw new Error(`${server.name}: cannot set the link of NIC ${nic}: ${r.status} ${r.text}`);
}
