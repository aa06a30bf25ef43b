// BMC quirk profiles: each reproduces a documented behaviour of real BMCs that an orchestrator must
// survive. A server runs with any combination of them (`quirks` in its configuration).

export const QUIRKS = {
  /** iDRAC: after EjectMedia the slot still reports the image as inserted for a few seconds, and an
   *  InsertMedia in that window fails as if the slot were occupied. */
  'eject-lag': 'media still reported inserted for a few seconds after EjectMedia',
  /** iLO: while the server is in POST, changes are refused with 400 UnableToModifyDuringSystemPOST. */
  'post-lock': 'boot and media changes refused while the server is in POST',
  /** Many BMCs: ResetType PowerCycle is not offered; sending it is a 400. */
  'no-power-cycle': 'PowerCycle missing from ResetType@Redfish.AllowableValues',
  /** iDRAC and others: virtual media image URLs must end in .iso. */
  'iso-only': 'image URLs refused unless their path ends in .iso',
  /** Dell, HPE and Lenovo: VirtualMedia lives under the Manager only, not under the System. */
  'manager-media-only': 'VirtualMedia only under Managers/{id}, not under Systems/{id}',
  /** sushy-tools over libvirt: BootSourceOverrideEnabled Disabled is answered with 500; target None is taken. */
  'no-override-disable': 'BootSourceOverrideEnabled "Disabled" refused with 500',
} as const;

export type Quirk = keyof typeof QUIRKS;

export function isQuirk(name: string): name is Quirk {
  return Object.hasOwn(QUIRKS, name);
}

/** How long the quirks last; short enough for tests, long enough that a careless client hits them. */
export interface QuirkTimings {
  ejectLagMs: number;
  postMs: number;
}

export const DEFAULT_QUIRK_TIMINGS: QuirkTimings = { ejectLagMs: 5_000, postMs: 15_000 };
