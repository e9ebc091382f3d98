import { describe, expect, it } from 'vitest';
import { hex, isFailure, reasonName } from './reason';

describe('reason codes', () => {
  it('names what a person sees when the broker refuses', () => {
    expect(reasonName(0x87)).toBe('0x87 Not authorized');
    expect(reasonName(0x98)).toBe('0x98 Administrative action');
    expect(reasonName(0x97)).toBe('0x97 Quota exceeded');
    expect(reasonName(0xa0)).toBe('0xA0 Maximum connect time');
    expect(reasonName(0x7f)).toBe('0x7F Unknown reason');
  });
  it('tells failures (0x80 and up) from successes', () => {
    expect(isFailure(0x02)).toBe(false);
    expect(isFailure(0x80)).toBe(true);
    expect(hex(5)).toBe('0x05');
  });
});
