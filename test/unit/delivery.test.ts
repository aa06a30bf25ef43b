// Delivery progress: the covered share is the union of the ranges read (checked against a byte map),
// and the rate counts the last five seconds only.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { Coverage } from '../../src/delivery/coverage.js';
import { DeliveryTracker } from '../../src/delivery/tracker.js';

describe('Coverage', () => {
  test('equals a byte map of every range added, in any order, overlapping, touching or repeated', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 60 })), { maxLength: 60 }), (ranges) => {
        const coverage = new Coverage();
        const map = new Uint8Array(400);
        for (const [start, length] of ranges) {
          coverage.add(start, start + length);
          map.fill(1, start, start + length);
        }
        expect(coverage.covered).toBe(map.reduce((a, b) => a + b, 0));
        // Disjoint, non-touching intervals: as many as the byte map's runs of ones.
        let runs = 0;
        for (let i = 0; i < map.length; i++) if (map[i] === 1 && (i === 0 || map[i - 1] === 0)) runs++;
        expect(coverage.intervals).toBe(runs);
      }),
      { numRuns: 500 },
    );
  });

  test('a sequential read extends one interval', () => {
    const coverage = new Coverage();
    for (let at = 0; at < 10 * 1024; at += 1024) coverage.add(at, at + 1024);
    expect([coverage.covered, coverage.intervals]).toEqual([10 * 1024, 1]);
  });
});

describe('DeliveryTracker', () => {
  test('bytes served count re-reads, the share covered does not; rate over the last five seconds; readers once each', () => {
    let now = Date.parse('2026-12-07T10:00:00.000Z');
    const tracker = new DeliveryTracker(() => now);
    const iso = tracker.file('b1', 'iso', 1000);
    iso.reader('192.0.2.10');
    tracker.served(iso, 0, 400);
    now += 1000;
    iso.reader('192.0.2.11');
    iso.reader('192.0.2.10');
    tracker.served(iso, 200, 400); // 200 bytes again, 200 new
    const view = tracker.view('b1', { uki: { size: 77 }, iso: { size: 1000 } });
    expect(view.iso).toEqual({
      size: 1000,
      bytesServed: 800,
      coveredBytes: 600,
      coveredPercent: 60,
      firstReadAt: '2026-12-07T10:00:00.000Z',
      lastReadAt: '2026-12-07T10:00:01.000Z',
      rateBytesPerSecond: 400, // 800 bytes over the 2 s since the first read
      readers: ['192.0.2.10', '192.0.2.11'],
      readerCount: 2,
    });
    expect(view.uki).toMatchObject({ size: 77, bytesServed: 0, coveredPercent: 0, firstReadAt: null, readers: [] });
    now += 10_000;
    expect(tracker.view('b1', { uki: { size: 77 }, iso: { size: 1000 } }).iso.rateBytesPerSecond).toBe(0);
    expect([...tracker.samples()]).toEqual([{ build: 'b1', file: 'iso', bytesServed: 800, coveredRatio: 0.6, rateBytesPerSecond: 0, lastRead: Date.parse('2026-12-07T10:00:01.000Z') / 1000 }]);
    tracker.forget('b1');
    expect([...tracker.samples()]).toEqual([]);
  });
});
