// The y axis of a usage chart: a few distinct, round ticks from 0 to at
// least the largest value. Bytes and counts are whole numbers, so their ticks
// are too (an axis of 0.2 B steps read "0 B, 0 B, 1 B, 1 B, 1 B" once); bytes
// step in powers of 1024 above 1 KiB, so each tick reads as a round figure.

import { bytes, fraction } from './format';

export type AxisUnit = 'count' | 'bytes' | 'minutes';

/** At most this many ticks above 0. */
const MOST_TICKS = 5;
const ROUND = [1, 2, 5];

/** Candidate steps, smallest first, up to what any value here needs. */
function steps(unit: AxisUnit): number[] {
  const out: number[] = [];
  if (unit === 'bytes') {
    for (let scale = 1; scale <= 1024 ** 5; scale *= 1024) {
      // 1, 2, 5 … 500 of each unit (B, KiB, MiB, …): 1000 of one is the next.
      for (let decade = 1; decade < 1000; decade *= 10) {
        for (const r of ROUND) out.push(r * decade * scale);
      }
    }
    return out;
  }
  // Connection-minutes have two decimals; counts are whole.
  const first = unit === 'minutes' ? -2 : 0;
  for (let exp = first; exp <= 15; exp += 1) for (const r of ROUND) out.push(r * 10 ** exp);
  return out;
}

/** The ticks of an axis whose largest value is `max` (nothing at all: as if 1). */
export function yTicks(unit: AxisUnit, max: number): number[] {
  const top = Number.isFinite(max) && max > 0 ? max : 1;
  const all = steps(unit);
  const step = all.find((s) => Math.ceil(top / s - 1e-9) <= MOST_TICKS) ?? all[all.length - 1];
  const count = Math.ceil(top / step - 1e-9);
  // toFixed keeps 0.1 + 0.2 from reading 0.30000000000000004.
  return Array.from({ length: count + 1 }, (_, i) => Number((i * step).toFixed(6)));
}

/** A tick or a value as the chart shows it. */
export function axisLabel(unit: AxisUnit, v: number): string {
  if (unit === 'bytes') return bytes(v);
  if (unit === 'minutes') return `${fraction(v)} min`;
  return fraction(v);
}
