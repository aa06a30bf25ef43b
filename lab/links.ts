// The lab's side of a server's cables: set a NIC's link down or up from the host, as pulling and
// plugging a cable would (QMP set_link on the server's second monitor, apart from the BMC's). The
// state lasts until the server's next power-on, when its BMC starts a new QEMU.
import { netdevId, qmpSockets } from './bmc/qemu/command-line.js';
import { QmpClient } from './bmc/qemu/qmp.js';
import type { LabServer } from './lab.js';

/** Sets link `nic` (0 = the first NIC, macs[0]) of a powered-on server down (`up` false) or up. */
export async function setLink(server: LabServer, nic: number, up: boolean): Promise<void> {
  if (!Number.isInteger(nic) || nic < 0 || nic >= server.macs.length) {
    throw new Error(`${server.name}: no NIC ${nic} (it has ${server.macs.length})`);
  }
  const socket = qmpSockets(server.stateDir).link;
  let qmp: QmpClient;
  try {
    qmp = await QmpClient.connect(socket, 2_000);
  } catch (err) {
    throw new Error(`${server.name}: cannot reach its QEMU to set a link (is it powered on?): ${(err as Error).message}`);
  }
  try {
    await qmp.execute('set_link', { name: netdevId(nic), up });
  } finally {
    qmp.close();
  }
}
