import { describe, expect, it } from 'vitest';
import { appendToLog, encodePayload, renderPayload, type LoggedMessage } from './messages';

const bytes = (s: string) => new TextEncoder().encode(s);

describe('renderPayload', () => {
  it('pretty-prints JSON', () => {
    expect(renderPayload(bytes('{"t":21.5,"ok":true}'))).toEqual({
      kind: 'json',
      text: '{\n  "t": 21.5,\n  "ok": true\n}',
      size: 20,
    });
  });
  it('shows text that only looks like JSON as text', () => {
    expect(renderPayload(bytes('{not json')).kind).toBe('text');
  });
  it('shows invalid UTF-8 as hex', () => {
    const r = renderPayload(new Uint8Array([0xff, 0x00, 0x41]));
    expect(r).toEqual({ kind: 'binary', text: 'ff 00 41', size: 3 });
  });
  it('says when a payload is empty', () => {
    expect(renderPayload(new Uint8Array()).kind).toBe('empty');
  });
});

describe('encodePayload', () => {
  it('checks and compacts JSON', () => {
    expect(encodePayload('{ "a": 1 }', 'json')).toEqual({ payload: '{"a":1}' });
    expect(encodePayload('{a:1}', 'json').error).toMatch(/Not valid JSON/);
    expect(encodePayload('{a:1}', 'text')).toEqual({ payload: '{a:1}' });
  });
});

describe('appendToLog', () => {
  it('keeps the newest messages first and bounded', () => {
    const msg = (id: number): LoggedMessage => ({
      id,
      at: new Date(0),
      direction: 'in',
      topic: 't',
      qos: 0,
      retain: false,
      body: renderPayload(bytes(String(id))),
    });
    let log: LoggedMessage[] = [];
    for (let i = 0; i < 5; i += 1) log = appendToLog(log, msg(i), 3);
    expect(log.map((m) => m.id)).toEqual([4, 3, 2]);
  });
});
