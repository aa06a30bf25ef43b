// The lab's servers as an Ansible inventory for orchestrator/: an object, serialised as YAML.
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import type { LabDescription } from './lab.js';
import { simulatedNicName } from './simulated.js';

/** The lab's servers as an Ansible inventory for orchestrator/ (group `servers`). */
export function ansibleInventory(d: LabDescription, staticServers: string[]): string {
  const untagged = { server_subnet: d.network.cidr, server_gateway: d.network.gateway };
  const vars: Record<string, unknown> = {
    uod_api_url: d.serviceUrl,
    uod_callback_url: d.serviceUrl,
    uod_callback_tls_url: d.serviceTlsUrl,
    uod_ca_cert: d.serviceCaCert,
    ssh_private_key_file: d.sshKey,
    inventory_output_dir: join(d.stateDir, 'inspections'),
    ...(d.network.vlan ? { server_vlan: d.network.vlan.id, server_subnet: d.network.vlan.cidr, server_gateway: d.network.vlan.gateway } : untagged),
    server_dns: d.network.dns,
    qcow2_image_url: d.targetImageUrl,
  };
  const hosts: Record<string, Record<string, unknown>> = {};
  for (const [i, s] of d.servers.entries()) {
    // Alternate the OS disk between the SCSI disk (listed by WWN under /dev/disk/by-id) and the NVMe one.
    const disk = s.disks[i % s.disks.length]!;
    const isStatic = staticServers.includes(s.name);
    hosts[s.name] = {
      bmc_host: s.bmc.host,
      bmc_username: s.bmc.username,
      bmc_password: s.bmc.password,
      bmc_resource_id: s.bmc.systemId,
      server_mac: s.provisioningMac,
      // A simulated server's NIC is a veth, which has no permanent MAC for Netplan to match.
      ...(s.kind === 'simulated' ? { server_nic_name: simulatedNicName(0) } : {}),
      // Both NICs on the provisioning bridge: provision onto a bond of the two (on the VLAN, if any).
      ...(d.network.secondNicBridge === d.network.bridge && !isStatic ? { server_bond_macs: s.macs } : {}),
      disk_serial: disk.serial,
      // A static server boots by UEFI HTTP boot where its BMC can (its firmware gets the address),
      // on the untagged network, from one NIC.
      ...(isStatic ? { boot_method: 'auto', server_vlan: 0, ...untagged } : { boot_method: 'cd' }),
    };
  }
  const header = [
    `# The servers of lab "${d.namespace}" (written by make lab). Run the playbooks inside its namespace:`,
    `#   cd orchestrator && ip netns exec ${d.namespace} ansible-playbook -i ${d.inventory} inspect.yml`,
  ];
  return header.join('\n') + '\n' + stringifyYaml({ all: { children: { servers: { vars, hosts } } } }, { lineWidth: 0 });
}
