// What a BMC profile gives the machine model and the Redfish adapter: its quirks, and for a recorded
// profile the recording, the System's id, the reset types it can carry out and its BIOS setup. One
// place for the BMC's start-up, the lab's plan and the tests.
import { FirmwareSetup } from '../machine/firmware.js';
import type { MachineCapabilities } from '../machine/machine.js';
import type { Quirk } from '../machine/quirks.js';
import { profileOf, type BmcProfile } from '../profiles/profiles.js';
import { Recording } from '../profiles/recording.js';
import { modelledResetTypes, recordedLayout } from './recorded.js';

export interface ProfileSetup {
  profile: BmcProfile;
  recording?: Recording;
  /** the recording's System id (undefined: the lab's standard resources take any) */
  systemId?: string;
  /** a fresh set per machine: the BIOS setup is the machine's own state */
  capabilities(): MachineCapabilities;
}

export function setUpProfile(nameOrDir: string, extraQuirks: Quirk[] = []): ProfileSetup {
  const profile = profileOf(nameOrDir, extraQuirks);
  if (!profile.recording) return { profile, capabilities: () => ({}) };
  const recording = new Recording(profile.recording);
  const layout = recordedLayout(recording, profile);
  return {
    profile,
    recording,
    systemId: layout.systemPath.split('/').pop()!,
    capabilities: () => ({
      resetTypes: modelledResetTypes(recording, layout.systemPath),
      firmware: new FirmwareSetup(layout.biosAttributes, profile.httpBoot ?? (() => null), profile.quirks.includes('bios-job-required')),
    }),
  };
}
