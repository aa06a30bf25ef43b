// The lab's option defaults: a flag that was not given (undefined) keeps the default.
import { describe, expect, test } from 'vitest';
import { defaultLabOptions } from '../../lab/lab.js';

describe('lab options', () => {
  test('undefined overrides keep the defaults; given ones win', () => {
    const d = defaultLabOptions('/repo', { namespace: undefined, servers: undefined });
    expect(d).toMatchObject({ namespace: 'uod-lab', stateDir: '/var/tmp/uod-lab/uod-lab', servers: 2, memoryMiB: 1536, accel: 'tcg' });
    expect(defaultLabOptions('/repo', { namespace: 'rack-a', servers: 3 })).toMatchObject({ namespace: 'rack-a', stateDir: '/var/tmp/uod-lab/rack-a', servers: 3 });
  });
});
