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
  /** iDRAC: ResetType On is answered with 409 for a while after the server went off. */
  'on-refused-after-off': 'ResetType On refused with 409 for a while after power-off',
  /** iLO: a reset too soon after another is answered with 400 InvalidOperationForSystemState. */
  'reset-too-soon': 'a reset within a few seconds of the last one refused with 400 InvalidOperationForSystemState',
  /** iDRAC while it reloads: a change is answered 500 (SYS518) and taken when sent again. */
  'transient-500': 'every other POST or PATCH answered 500 IDRAC.2.8.SYS518',
  /** Some BMCs: InsertMedia is answered 202 with a task, and the image is attached only when it has run. */
  'insert-task': 'InsertMedia answered 202 with a task; the media is usable only when the task completes',
  /** Some BMCs: the reset types are listed only in the Reset action's @Redfish.ActionInfo resource. */
  'reset-types-in-actioninfo': 'ResetType allowable values only in the ActionInfo resource',
  /** Some BMCs (Lenovo SD530, others): InsertMedia without TransferProtocolType is a 400 ActionParameterMissing. */
  'transfer-protocol-required': 'InsertMedia refused without TransferProtocolType',
  /** Supermicro: the virtual CD boots only as target UsbCd, and a target sent without
   *  BootSourceOverrideMode falls back to Legacy (which boots nothing here). */
  'usbcd-only': 'virtual media boots only as UsbCd; a target without its mode becomes Legacy',
  /** Supermicro: ImageName keeps the last image's name after EjectMedia (Image and Inserted clear). */
  'imagename-after-eject': 'ImageName still names the last image after EjectMedia',
  /** iLO and others: a PATCH without If-Match is 428; a weak ETag sent back as is is 412. */
  'if-match-required': 'PATCH refused without If-Match (428) or with a weak ETag (412)',
  /** Dell iDRAC: BIOS settings apply at the next reset only when committed with an apply time (a job). */
  'bios-job-required': 'pending BIOS settings apply only when committed with @Redfish.SettingsApplyTime',
  /** Some BMCs (and hardened setups): HTTP Basic is refused; only Redfish sessions (X-Auth-Token) work. */
  'session-only': 'HTTP Basic refused: only Redfish sessions (X-Auth-Token)',
  /** Some BMCs: the System has no Links.ManagedBy; its Manager is found in the Managers collection. */
  'no-managed-by': 'no Links.ManagedBy on the System',
  /** Some BMCs: the first slot listed is the KVM console's (CD/DVD, no actions, no PATCH). */
  'kvm-slot-first': 'a KVM-only CD slot (no InsertMedia, no PATCH) listed first',
  /** iLO without its Advanced licence, XCC without its own: virtual media refused with 400. */
  'media-licence-required': 'virtual media refused with 400: a licence is required',
  /** iDRAC10: Boot is read-only on the System and written through its @Redfish.Settings resource. */
  'boot-in-settings': 'Boot read-only on the System; written at Systems/{id}/Settings',
  /** Some BMCs (recent iDRAC and XCC settings): virtual media only from https:// URLs. */
  'https-only-media': 'image URLs refused (400) unless they are https://',
} as const;

export type Quirk = keyof typeof QUIRKS;

export function isQuirk(name: string): name is Quirk {
  return Object.hasOwn(QUIRKS, name);
}

/** How long the quirks last; short enough for tests, long enough that a careless client hits them. */
export interface QuirkTimings {
  ejectLagMs: number;
  postMs: number;
  /** on-refused-after-off: how long On is refused after the power went off. */
  onRefusedMs: number;
  /** reset-too-soon: the least time between two resets. */
  resetGapMs: number;
}

export const DEFAULT_QUIRK_TIMINGS: QuirkTimings = { ejectLagMs: 5_000, postMs: 15_000, onRefusedMs: 8_000, resetGapMs: 5_000 };
