import { describe, expect, it } from 'vitest';
import { usageSeries, usageWindow } from './usage';

describe('usage', () => {
  it('asks for the 24 whole hours ending with the current one', () => {
    const w = usageWindow(new Date('2026-11-28T15:42:10Z'));
    expect(w).toEqual({ from: '2026-11-27T16:00:00.000Z', to: '2026-11-28T16:00:00.000Z' });
  });

  it('fills the hours without activity with zeros', () => {
    const s = usageSeries({
      from: '2026-11-28T12:00:00Z',
      to: '2026-11-28T16:00:00Z',
      hours: [
        { hour: '2026-11-28T13:00:00Z', connection_minutes: 12.5, messages_in: 3, messages_out: 6, bytes_in: 30, bytes_out: 60 },
        { hour: '2026-11-28T15:00:00Z', connection_minutes: 1, messages_in: 1, messages_out: 0, bytes_in: 5, bytes_out: 0 },
      ],
      totals: { connection_minutes: 13.5, messages_in: 4, messages_out: 6, bytes_in: 35, bytes_out: 60 },
    });
    expect(s.hours).toEqual([12, 13, 14, 15].map((h) => Date.parse(`2026-11-28T${h}:00:00Z`) / 1000));
    expect(s.connectionMinutes).toEqual([0, 12.5, 0, 1]);
    expect(s.messagesIn).toEqual([0, 3, 0, 1]);
    expect(s.messagesOut).toEqual([0, 6, 0, 0]);
    expect(s.bytesIn).toEqual([0, 30, 0, 5]);
    expect(s.bytesOut).toEqual([0, 60, 0, 0]);
  });
});
