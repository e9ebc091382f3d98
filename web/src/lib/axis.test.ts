import { describe, expect, it } from 'vitest';
import { axisLabel, yTicks, type AxisUnit } from './axis';

const labels = (unit: AxisUnit, max: number) => yTicks(unit, max).map((v) => axisLabel(unit, v));

describe('the usage charts y axis', () => {
  it('with no traffic reads 0 B once, then 1 B', () => {
    expect(labels('bytes', 0)).toEqual(['0 B', '1 B']);
    expect(labels('count', 0)).toEqual(['0', '1']);
  });

  it('steps bytes in whole bytes, then in round KiB and MiB', () => {
    expect(labels('bytes', 3)).toEqual(['0 B', '1 B', '2 B', '3 B']);
    expect(labels('bytes', 900)).toEqual(['0 B', '200 B', '400 B', '600 B', '800 B', '1000 B']);
    expect(labels('bytes', 5000)).toEqual(['0 B', '1.0 KiB', '2.0 KiB', '3.0 KiB', '4.0 KiB', '5.0 KiB']);
    expect(labels('bytes', 3 * 1024 ** 2)).toEqual(['0 B', '1.0 MiB', '2.0 MiB', '3.0 MiB']);
  });

  it('keeps connection-minutes fractional', () => {
    expect(labels('minutes', 0.3)).toEqual(['0 min', '0.1 min', '0.2 min', '0.3 min']);
  });

  for (const unit of ['bytes', 'count', 'minutes'] as const) {
    it(`gives ${unit} distinct ascending ticks from 0 past the largest value, at most 6`, () => {
      for (const max of [0, 0.4, 1, 2, 7, 13, 99, 101, 999, 1023, 1025, 1500, 12_345, 987_654, 5e7, 3.3e9, 2e12]) {
        const ticks = yTicks(unit, max);
        const shown = ticks.map((v) => axisLabel(unit, v));
        expect(ticks[0], `${unit} ${max}`).toBe(0);
        expect(ticks.at(-1)!, `${unit} ${max}`).toBeGreaterThanOrEqual(max);
        expect(ticks.length, `${unit} ${max}`).toBeGreaterThanOrEqual(2);
        expect(ticks.length, `${unit} ${max}`).toBeLessThanOrEqual(6);
        expect(new Set(shown).size, `${unit} ${max}: ${shown.join(', ')}`).toBe(shown.length);
        for (let i = 1; i < ticks.length; i += 1) expect(ticks[i]).toBeGreaterThan(ticks[i - 1]);
      }
    });
  }
});
