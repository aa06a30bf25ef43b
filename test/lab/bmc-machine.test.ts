// The virtual BMC's machine model over a fake driver: power transitions, boot overrides and their
// consumption, the CD slot, and each quirk's window.
import { describe, expect, test } from 'vitest';
import { MachineError } from '../../lab/bmc/machine/machine.js';
import { makeMachine, sleep } from './bmc-fakes.js';

const ISO = 'http://10.0.2.2:8080/artifacts/abc/boot.iso';
const ISO2 = 'https://10.0.2.2:8443/artifacts/def/other.iso';

/** The MachineError a call throws (sync or async), or a failure if it does not throw one. */
async function refusal(fn: () => unknown): Promise<MachineError> {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MachineError);
    return err as MachineError;
  }
  throw new Error('expected a MachineError');
}

async function poweredOn(quirks: Parameters<typeof makeMachine>[0] = []) {
  const m = makeMachine(quirks);
  m.machine.reset('On');
  await m.machine.settled();
  return m;
}

describe('power', () => {
  test('On goes through PoweringOn to On and boots the default device', async () => {
    const { machine, driver } = makeMachine();
    expect(machine.powerState).toBe('Off');
    machine.reset('On');
    expect(machine.powerState).toBe('PoweringOn');
    expect(driver.calls).toEqual([]); // the power-on delay comes first
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.plans()).toEqual([{ device: 'default' }]);
    expect(machine.bootCount).toBe(1);
    expect(machine.lastBoot).toEqual({ device: 'default' });
  });

  test('On when already on (or powering on) is a conflict', async () => {
    const { machine } = makeMachine();
    machine.reset('On');
    expect((await refusal(() => machine.reset('On'))).kind).toBe('conflict');
    await machine.settled();
    expect((await refusal(() => machine.reset('On'))).kind).toBe('conflict');
  });

  test('ForceOff cuts power; ForceOff when off is a conflict', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('ForceOff');
    expect(machine.powerState).toBe('PoweringOff');
    await machine.settled();
    expect(machine.powerState).toBe('Off');
    expect(driver.ops()).toEqual(['powerOn', 'powerOff']);
    expect((await refusal(() => machine.reset('ForceOff'))).kind).toBe('conflict');
  });

  test('GracefulShutdown presses the button and stays On until the guest powers off', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('GracefulShutdown');
    await machine.settled();
    expect(driver.ops()).toEqual(['powerOn', 'pressPowerButton']);
    expect(machine.powerState).toBe('On');
    driver.stop('guest-shutdown');
    expect(machine.powerState).toBe('Off');
    await machine.settled();
    expect(machine.powerState).toBe('Off');
    expect(driver.plans()).toHaveLength(1);
  });

  test('GracefulShutdown needs the server On', async () => {
    const { machine } = makeMachine();
    expect((await refusal(() => machine.reset('GracefulShutdown'))).kind).toBe('conflict');
  });

  test('GracefulRestart powers back on once the guest has shut down', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('GracefulRestart');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    driver.stop('guest-shutdown');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.ops()).toEqual(['powerOn', 'pressPowerButton', 'powerOn']);
    // The restart is one-shot: the next guest shutdown leaves the server off.
    driver.stop('guest-shutdown');
    await machine.settled();
    expect(machine.powerState).toBe('Off');
  });

  test('a GracefulRestart the guest ignored does not survive a ForceOff', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('GracefulRestart');
    await machine.settled();
    machine.reset('ForceOff');
    await machine.settled();
    machine.reset('On');
    await machine.settled();
    driver.stop('guest-shutdown');
    await machine.settled();
    expect(machine.powerState).toBe('Off');
    expect(driver.plans()).toHaveLength(2);
  });

  test('a guest reboot powers the server straight back on with the pending override', async () => {
    const { machine, driver } = await poweredOn();
    machine.setBoot({ target: 'Hdd', enabled: 'Once' });
    driver.stop('guest-reset');
    expect(machine.powerState).toBe('PoweringOn');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.plans()).toEqual([{ device: 'default' }, { device: 'hdd' }]);
  });

  test('a guest reboot racing a ForceOff leaves the server off', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('ForceOff');
    driver.stop('guest-reset'); // before the queued power cut has run
    await machine.settled();
    expect(machine.powerState).toBe('Off');
    expect(driver.plans()).toHaveLength(1);
  });

  test('a guest reboot racing a ForceRestart boots once', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('ForceRestart');
    driver.stop('guest-reset');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.plans()).toHaveLength(2);
  });

  test('ForceRestart cuts power and boots again', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('ForceRestart');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.ops()).toEqual(['powerOn', 'powerOff', 'powerOn']);
  });

  test('PowerCycle from On: power off, then on', async () => {
    const { machine, driver } = await poweredOn();
    machine.reset('PowerCycle');
    expect(machine.powerState).toBe('PoweringOff');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.ops()).toEqual(['powerOn', 'powerOff', 'powerOn']);
  });

  test('PowerCycle from Off powers on', async () => {
    const { machine, driver } = makeMachine();
    machine.reset('PowerCycle');
    expect(machine.powerState).toBe('PoweringOn');
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.ops()).toEqual(['powerOn']);
  });

  test('a crash leaves the server off', async () => {
    const { machine, driver } = await poweredOn();
    driver.stop('crash');
    expect(machine.powerState).toBe('Off');
    await machine.settled();
    expect(machine.powerState).toBe('Off');
    expect(driver.plans()).toHaveLength(1);
  });

  test('a driver that fails to start leaves the server off and the BMC usable', async () => {
    const { machine, driver } = makeMachine();
    driver.failNextPowerOn = 'QEMU did not start';
    machine.reset('On');
    await machine.settled();
    expect(machine.powerState).toBe('Off');
    machine.reset('On');
    await machine.settled();
    expect(machine.powerState).toBe('On');
  });

  test('unknown ResetType values are not supported and name the parameter', async () => {
    const { machine } = makeMachine();
    const err = await refusal(() => machine.reset('Nmi'));
    expect(err.kind).toBe('not-supported');
    expect(err.property).toBe('ResetType');
  });
});

describe('boot override', () => {
  test('Once is consumed by exactly one boot', async () => {
    const { machine, driver } = makeMachine();
    await machine.insertMedia(ISO);
    machine.setBoot({ target: 'Cd', enabled: 'Once' });
    machine.reset('On');
    await machine.settled();
    expect(driver.plans()[0]).toEqual({ device: 'cd', mediaUrl: ISO });
    expect(machine.bootOverride).toMatchObject({ target: 'None', enabled: 'Disabled' });
    machine.reset('ForceRestart');
    await machine.settled();
    expect(driver.plans()[1]).toEqual({ device: 'default', mediaUrl: ISO });
  });

  test('a target without Enabled means Once', async () => {
    const { machine } = makeMachine();
    machine.setBoot({ target: 'Hdd' });
    expect(machine.bootOverride).toMatchObject({ target: 'Hdd', enabled: 'Once' });
  });

  test('Continuous persists across boots', async () => {
    const { machine, driver } = makeMachine();
    machine.setBoot({ target: 'Hdd', enabled: 'Continuous' });
    machine.reset('On');
    await machine.settled();
    machine.reset('ForceRestart');
    await machine.settled();
    expect(driver.plans().map((p) => p.device)).toEqual(['hdd', 'hdd']);
    expect(machine.bootOverride).toMatchObject({ target: 'Hdd', enabled: 'Continuous' });
  });

  test('Cd without media boots the default order', async () => {
    const { machine, driver } = makeMachine();
    machine.setBoot({ target: 'Cd', enabled: 'Once' });
    machine.reset('On');
    await machine.settled();
    expect(driver.plans()).toEqual([{ device: 'default' }]);
  });

  test('UefiHttp with an HttpBootUri boots that URI', async () => {
    const { machine, driver } = makeMachine();
    const uri = 'http://10.0.2.2:8080/artifacts/abc/uki.efi';
    machine.setBoot({ target: 'UefiHttp', enabled: 'Once', httpBootUri: uri });
    machine.reset('On');
    await machine.settled();
    expect(driver.plans()).toEqual([{ device: 'http', httpBootUri: uri }]);
  });

  test('UefiHttp without an HttpBootUri boots the default order', async () => {
    const { machine, driver } = makeMachine();
    machine.setBoot({ target: 'UefiHttp', enabled: 'Once' });
    machine.reset('On');
    await machine.settled();
    expect(driver.plans()).toEqual([{ device: 'default' }]);
  });

  test('target None disables the override', async () => {
    const { machine } = makeMachine();
    machine.setBoot({ target: 'Hdd', enabled: 'Continuous' });
    machine.setBoot({ target: 'None' });
    expect(machine.bootOverride).toMatchObject({ target: 'None', enabled: 'Disabled' });
  });

  test('bad values name the property and change nothing', async () => {
    const { machine } = makeMachine();
    const before = { ...machine.bootOverride };
    for (const [patch, property] of [
      [{ target: 'Pxe' }, 'Boot/BootSourceOverrideTarget'],
      [{ target: 'Hdd', enabled: 'Always' }, 'Boot/BootSourceOverrideEnabled'],
      [{ mode: 'Legacy' }, 'Boot/BootSourceOverrideMode'],
      [{ httpBootUri: 'tftp://10.0.2.2/uki.efi' }, 'Boot/HttpBootUri'],
      [{ httpBootUri: 'not a url' }, 'Boot/HttpBootUri'],
    ] as const) {
      const err = await refusal(() => machine.setBoot(patch));
      expect(err.kind).toBe('bad-value');
      expect(err.property).toBe(property);
    }
    expect(machine.bootOverride).toEqual(before);
  });
});

describe('virtual media', () => {
  test('insert probes the image and fills the slot; a second insert is a conflict', async () => {
    const { machine, probe } = makeMachine();
    await machine.insertMedia(ISO);
    expect(probe.probed).toEqual([ISO]);
    expect(machine.mediaSlot).toEqual({ image: ISO, inserted: true, writeProtected: true });
    expect((await refusal(() => machine.insertMedia(ISO2))).kind).toBe('conflict');
    expect(machine.mediaSlot.image).toBe(ISO);
  });

  test('an unreachable image is refused and the slot stays empty', async () => {
    const { machine, probe } = makeMachine();
    probe.unreachable.add(ISO);
    const err = await refusal(() => machine.insertMedia(ISO));
    expect(err.kind).toBe('media-unreachable');
    expect(machine.mediaSlot).toMatchObject({ image: null, inserted: false });
  });

  test('non-http URLs and writable media are refused', async () => {
    const { machine } = makeMachine();
    expect((await refusal(() => machine.insertMedia('nfs://10.0.2.2/boot.iso'))).property).toBe('Image');
    expect((await refusal(() => machine.insertMedia(ISO, true, false))).property).toBe('WriteProtected');
  });

  test('eject empties the slot; ejecting an empty slot is fine', async () => {
    const { machine, driver } = makeMachine();
    await machine.insertMedia(ISO);
    await machine.ejectMedia();
    expect(machine.mediaSlot).toEqual({ image: null, inserted: false, writeProtected: true });
    await machine.ejectMedia();
    expect(driver.ops()).toEqual([]); // the server is off: nothing to tell the driver
  });

  test('insert and eject while On change the running machine\'s CD', async () => {
    const { machine, driver } = await poweredOn();
    await machine.insertMedia(ISO);
    await machine.ejectMedia();
    expect(driver.calls.slice(1)).toEqual([
      { op: 'changeMedia', url: ISO },
      { op: 'changeMedia', url: undefined },
    ]);
  });

  test('media inserted while the machine starts reaches the running machine', async () => {
    const { machine, driver } = makeMachine();
    let open!: () => void;
    driver.powerOnGate = new Promise((r) => (open = r));
    machine.reset('On');
    while (driver.plans().length === 0) await sleep(5); // the boot is planned, the driver is starting
    expect(driver.plans()).toEqual([{ device: 'default' }]);
    await machine.insertMedia(ISO);
    open();
    await machine.settled();
    expect(machine.powerState).toBe('On');
    expect(driver.calls.at(-1)).toEqual({ op: 'changeMedia', url: ISO });
  });

  test('the inserted image is attached at every boot', async () => {
    const { machine, driver } = makeMachine();
    await machine.insertMedia(ISO);
    machine.reset('On');
    await machine.settled();
    expect(driver.plans()).toEqual([{ device: 'default', mediaUrl: ISO }]);
  });
});

describe('quirks', () => {
  test('eject-lag: the old image is reported and blocks inserts for a while', async () => {
    const { machine } = makeMachine(['eject-lag']);
    await machine.insertMedia(ISO);
    await machine.ejectMedia();
    expect(machine.mediaSlot).toMatchObject({ image: ISO, inserted: true });
    expect((await refusal(() => machine.insertMedia(ISO2))).kind).toBe('conflict');
    await sleep(250);
    expect(machine.mediaSlot).toMatchObject({ image: null, inserted: false });
    await machine.insertMedia(ISO2);
    expect(machine.mediaSlot).toMatchObject({ image: ISO2, inserted: true });
  });

  test('eject-lag: a lagging image is not attached at the next boot', async () => {
    const { machine, driver } = makeMachine(['eject-lag']);
    await machine.insertMedia(ISO);
    await machine.ejectMedia();
    machine.reset('On');
    await machine.settled();
    expect(driver.plans()).toEqual([{ device: 'default' }]);
  });

  test('post-lock: changes are refused during POST and accepted after', async () => {
    const { machine } = await poweredOn(['post-lock']);
    expect(machine.inPost).toBe(true);
    expect((await refusal(() => machine.setBoot({ target: 'Hdd' }))).kind).toBe('in-post');
    expect((await refusal(() => machine.insertMedia(ISO))).kind).toBe('in-post');
    expect((await refusal(() => machine.ejectMedia())).kind).toBe('in-post');
    await sleep(250);
    expect(machine.inPost).toBe(false);
    machine.setBoot({ target: 'Hdd' });
    await machine.insertMedia(ISO);
    await machine.ejectMedia();
  });

  test('post-lock: a server that is off is not in POST', async () => {
    const { machine } = makeMachine(['post-lock']);
    machine.setBoot({ target: 'Hdd' });
    await machine.insertMedia(ISO);
  });

  test('without post-lock, POST does not refuse anything', async () => {
    const { machine } = await poweredOn();
    machine.setBoot({ target: 'Hdd' });
    await machine.insertMedia(ISO);
  });

  test('no-power-cycle: PowerCycle is not offered and is refused', async () => {
    const { machine, driver } = await poweredOn(['no-power-cycle']);
    expect(machine.allowedResetTypes()).not.toContain('PowerCycle');
    expect(machine.allowedResetTypes()).toContain('ForceRestart');
    expect((await refusal(() => machine.reset('PowerCycle'))).kind).toBe('not-supported');
    await machine.settled();
    expect(driver.ops()).toEqual(['powerOn']);
    expect(makeMachine().machine.allowedResetTypes()).toContain('PowerCycle');
  });

  test('iso-only: only .iso paths are accepted, in any case', async () => {
    const { machine } = makeMachine(['iso-only']);
    const err = await refusal(() => machine.insertMedia('http://10.0.2.2:8080/artifacts/abc/uki.efi'));
    expect(err).toMatchObject({ kind: 'bad-value', property: 'Image' });
    await machine.insertMedia(ISO);
    await machine.ejectMedia();
    await machine.insertMedia('http://10.0.2.2:8080/artifacts/abc/BOOT.ISO?token=1');
    expect(machine.mediaSlot.inserted).toBe(true);
  });

  test('without iso-only, any http image is accepted', async () => {
    const { machine } = makeMachine();
    await machine.insertMedia('http://10.0.2.2:8080/artifacts/abc/uki.efi');
  });
});
