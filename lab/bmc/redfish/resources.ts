// Renders the Redfish resources of one server (DMTF schema property names and enum values) from its
// inventory and the machine model's live state. No QEMU knowledge here.
import type { Machine } from '../machine/machine.js';

export interface Inventory {
  systemId: string;
  name: string;
  uuid: string;
  serialNumber: string;
  memoryMiB: number;
  cpus: number;
  nics: { mac: string }[];
  disks: { kind: 'scsi-hd' | 'nvme' | 'virtio-blk'; serial: string; wwn?: string; sizeGiB: number }[];
}

export const MANAGER_ID = 'BMC';
export const CHASSIS_ID = 'Chassis';
export const STORAGE_ID = 'Storage';
export const MEDIA_ID = 'Cd';
export const KVM_MEDIA_ID = 'Kvm';

const link = (id: string) => ({ '@odata.id': id });

/** The file name of an image URL; a stray % in it must not break every GET of the slot. */
export function imageName(image: string): string {
  const last = new URL(image).pathname.split('/').pop() ?? '';
  try {
    return decodeURIComponent(last);
  } catch {
    return last;
  }
}

export class Resources {
  readonly system: string;
  readonly managerPath = `/redfish/v1/Managers/${MANAGER_ID}`;
  readonly chassis = `/redfish/v1/Chassis/${CHASSIS_ID}`;

  constructor(
    private readonly inv: Inventory,
    private readonly machine: Machine,
    private readonly bmcUuid: string,
  ) {
    this.system = `/redfish/v1/Systems/${inv.systemId}`;
  }

  get settingsPath(): string {
    return `${this.system}/Settings`;
  }

  /** boot-in-settings: the System's pending settings resource, where Boot is written (iDRAC10). */
  systemSettings() {
    const { BootSourceOverrideTarget, BootSourceOverrideEnabled, BootSourceOverrideMode } = this.computerSystem().Boot as Record<string, unknown>;
    return {
      '@odata.id': this.settingsPath,
      '@odata.type': '#ComputerSystem.v1_20_0.ComputerSystem',
      Id: 'Settings',
      Name: 'System settings',
      Boot: { BootSourceOverrideTarget, BootSourceOverrideEnabled, BootSourceOverrideMode },
    };
  }

  /** The slots of a media collection: the CD, and (kvm-slot-first) the KVM console's before it. */
  mediaMembers(collection: string): string[] {
    const cd = `${collection}/${MEDIA_ID}`;
    return this.machine.quirks.has('kvm-slot-first') ? [`${collection}/${KVM_MEDIA_ID}`, cd] : [cd];
  }

  /** kvm-slot-first: a CD slot that only the KVM console's own client can fill. */
  kvmMedia(collection: string) {
    return {
      '@odata.id': `${collection}/${KVM_MEDIA_ID}`,
      '@odata.type': '#VirtualMedia.v1_6_0.VirtualMedia',
      Id: KVM_MEDIA_ID,
      Name: 'KVM virtual media',
      MediaTypes: ['CD', 'DVD'],
      Image: null,
      Inserted: false,
      ConnectedVia: 'NotConnected',
    };
  }

  get resetActionInfoPath(): string {
    return `${this.system}/ResetActionInfo`;
  }

  /** The ActionInfo of ComputerSystem.Reset (DSP0268 ActionInfo: Parameters with AllowableValues). */
  resetActionInfo() {
    return {
      '@odata.id': this.resetActionInfoPath,
      '@odata.type': '#ActionInfo.v1_3_0.ActionInfo',
      Id: 'ResetActionInfo',
      Name: 'Reset Action Info',
      Parameters: [{ Name: 'ResetType', Required: true, DataType: 'String', AllowableValues: this.machine.allowedResetTypes() }],
    };
  }

  /** Where the CD slot is reachable: under the System and the Manager, or (quirk) the Manager only. */
  mediaCollections(): string[] {
    const paths = [`${this.managerPath}/VirtualMedia`];
    if (!this.machine.quirks.has('manager-media-only')) paths.unshift(`${this.system}/VirtualMedia`);
    return paths;
  }

  serviceRoot() {
    return {
      '@odata.id': '/redfish/v1',
      '@odata.type': '#ServiceRoot.v1_15_0.ServiceRoot',
      Id: 'RootService',
      Name: 'Root Service',
      RedfishVersion: '1.15.0',
      UUID: this.bmcUuid,
      Vendor: 'uki-on-demand',
      Product: 'uki-on-demand virtual BMC',
      Systems: link('/redfish/v1/Systems'),
      Chassis: link('/redfish/v1/Chassis'),
      Managers: link('/redfish/v1/Managers'),
      SessionService: link('/redfish/v1/SessionService'),
      Links: { Sessions: link('/redfish/v1/SessionService/Sessions') },
    };
  }

  collection(path: string, type: string, name: string, members: string[]) {
    return {
      '@odata.id': path,
      '@odata.type': `#${type}Collection.${type}Collection`,
      Name: name,
      'Members@odata.count': members.length,
      Members: members.map(link),
    };
  }

  computerSystem() {
    const m = this.machine;
    const boot = m.bootOverride;
    const system: Record<string, unknown> = {
      '@odata.id': this.system,
      '@odata.type': '#ComputerSystem.v1_20_0.ComputerSystem',
      Id: this.inv.systemId,
      Name: this.inv.name,
      SystemType: 'Physical',
      // usbcd-only: sushy turns Cd into UsbCd only for this manufacturer, as Supermicro needs.
      Manufacturer: m.quirks.has('usbcd-only') ? 'Supermicro' : 'uki-on-demand',
      Model: 'Lab Server',
      SerialNumber: this.inv.serialNumber,
      UUID: this.inv.uuid,
      PowerState: m.powerState,
      Status: { State: 'Enabled', Health: 'OK' },
      ProcessorSummary: { Count: this.inv.cpus },
      MemorySummary: { TotalSystemMemoryGiB: Math.round((this.inv.memoryMiB / 1024) * 100) / 100 },
      Boot: {
        BootSourceOverrideTarget: boot.target,
        'BootSourceOverrideTarget@Redfish.AllowableValues': m.quirks.has('usbcd-only') ? ['None', 'Cd', 'UsbCd', 'Hdd', 'UefiHttp'] : ['None', 'Cd', 'Hdd', 'UefiHttp'],
        BootSourceOverrideEnabled: boot.enabled,
        'BootSourceOverrideEnabled@Redfish.AllowableValues': ['Disabled', 'Once', 'Continuous'],
        BootSourceOverrideMode: boot.mode,
        'BootSourceOverrideMode@Redfish.AllowableValues': m.quirks.has('usbcd-only') ? ['UEFI', 'Legacy'] : ['UEFI'],
        HttpBootUri: boot.httpBootUri,
      },
      Actions: {
        '#ComputerSystem.Reset': {
          target: `${this.system}/Actions/ComputerSystem.Reset`,
          // Some BMCs list the reset types only in the action's ActionInfo resource.
          ...(m.quirks.has('reset-types-in-actioninfo')
            ? { '@Redfish.ActionInfo': this.resetActionInfoPath }
            : { 'ResetType@Redfish.AllowableValues': m.allowedResetTypes() }),
        },
      },
      EthernetInterfaces: link(`${this.system}/EthernetInterfaces`),
      Storage: link(`${this.system}/Storage`),
      Links: m.quirks.has('no-managed-by') ? { Chassis: [link(this.chassis)] } : { Chassis: [link(this.chassis)], ManagedBy: [link(this.managerPath)] },
    };
    if (m.quirks.has('boot-in-settings')) system['@Redfish.Settings'] = { '@odata.type': '#Settings.v1_3_5.Settings', SettingsObject: link(this.settingsPath) };
    if (!m.quirks.has('manager-media-only')) system.VirtualMedia = link(`${this.system}/VirtualMedia`);
    if (m.secureBoot) system.SecureBoot = link(`${this.system}/SecureBoot`);
    return system;
  }

  nicIds(): string[] {
    return this.inv.nics.map((_, i) => `NIC${i + 1}`);
  }

  ethernetInterface(id: string) {
    const i = this.nicIds().indexOf(id);
    const nic = this.inv.nics[i];
    if (!nic) return undefined;
    return {
      '@odata.id': `${this.system}/EthernetInterfaces/${id}`,
      '@odata.type': '#EthernetInterface.v1_9_0.EthernetInterface',
      Id: id,
      Name: `Ethernet interface ${i + 1}`,
      MACAddress: nic.mac,
      PermanentMACAddress: nic.mac,
      LinkStatus: 'LinkUp',
      Status: { State: 'Enabled', Health: 'OK' },
    };
  }

  storage() {
    return {
      '@odata.id': `${this.system}/Storage/${STORAGE_ID}`,
      '@odata.type': '#Storage.v1_13_0.Storage',
      Id: STORAGE_ID,
      Name: 'Local storage',
      Drives: this.driveIds().map((d) => link(`${this.system}/Storage/${STORAGE_ID}/Drives/${d}`)),
      'Drives@odata.count': this.inv.disks.length,
      Status: { State: 'Enabled', Health: 'OK' },
    };
  }

  driveIds(): string[] {
    return this.inv.disks.map((_, i) => `Disk${i}`);
  }

  drive(id: string) {
    const i = this.driveIds().indexOf(id);
    const d = this.inv.disks[i];
    if (!d) return undefined;
    const protocol = { 'scsi-hd': 'SAS', nvme: 'NVMe', 'virtio-blk': 'PCIe' }[d.kind];
    return {
      '@odata.id': `${this.system}/Storage/${STORAGE_ID}/Drives/${id}`,
      '@odata.type': '#Drive.v1_17_0.Drive',
      Id: id,
      Name: `${d.kind} disk ${i}`,
      SerialNumber: d.serial,
      CapacityBytes: d.sizeGiB * 1024 ** 3,
      Protocol: protocol,
      MediaType: d.kind === 'scsi-hd' ? 'HDD' : 'SSD',
      Identifiers: d.wwn ? [{ DurableName: d.wwn.replace(/^0x/i, '').toUpperCase(), DurableNameFormat: 'NAA' }] : [],
      Status: { State: 'Enabled', Health: 'OK' },
    };
  }

  managerResource() {
    return {
      '@odata.id': this.managerPath,
      '@odata.type': '#Manager.v1_17_0.Manager',
      Id: MANAGER_ID,
      Name: 'Virtual BMC',
      ManagerType: 'BMC',
      UUID: this.bmcUuid,
      FirmwareVersion: '1.0.0',
      Status: { State: 'Enabled', Health: 'OK' },
      VirtualMedia: link(`${this.managerPath}/VirtualMedia`),
      Links: { ManagerForServers: [link(this.system)], ManagerForChassis: [link(this.chassis)] },
    };
  }

  chassisResource() {
    return {
      '@odata.id': this.chassis,
      '@odata.type': '#Chassis.v1_23_0.Chassis',
      Id: CHASSIS_ID,
      Name: 'Lab server chassis',
      ChassisType: 'RackMount',
      SerialNumber: this.inv.serialNumber,
      PowerState: this.machine.powerState,
      Status: { State: 'Enabled', Health: 'OK' },
      Links: { ComputerSystems: [link(this.system)], ManagedBy: [link(this.managerPath)] },
    };
  }

  virtualMedia(collection: string) {
    const slot = this.machine.mediaSlot;
    const path = `${collection}/${MEDIA_ID}`;
    return {
      '@odata.id': path,
      '@odata.type': '#VirtualMedia.v1_6_0.VirtualMedia',
      Id: MEDIA_ID,
      Name: 'Virtual CD',
      MediaTypes: ['CD', 'DVD'],
      Image: slot.image,
      ImageName: slot.image ? imageName(slot.image) : this.machine.quirks.has('imagename-after-eject') && this.machine.lastImage ? imageName(this.machine.lastImage) : null,
      Inserted: slot.inserted,
      WriteProtected: slot.writeProtected,
      ConnectedVia: slot.inserted ? 'URI' : 'NotConnected',
      TransferMethod: 'Stream',
      TransferProtocolType: slot.image ? (slot.image.startsWith('https:') ? 'HTTPS' : 'HTTP') : null,
      Actions: {
        '#VirtualMedia.InsertMedia': { target: `${path}/Actions/VirtualMedia.InsertMedia` },
        '#VirtualMedia.EjectMedia': { target: `${path}/Actions/VirtualMedia.EjectMedia` },
      },
    };
  }
}
