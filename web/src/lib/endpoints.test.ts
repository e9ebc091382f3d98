import { describe, expect, it } from 'vitest';
import { servesTls, shownEndpoints, websocketChoices } from './endpoints';

const plain = { mqtt: 'mqtt://127.0.0.1:1883', ws: 'ws://127.0.0.1:8083/mqtt' };
const withTls = { ...plain, mqtts: 'mqtts://127.0.0.1:8883', wss: 'wss://127.0.0.1:8084/mqtt' };

describe('endpoints', () => {
  it('without TLS, shows MQTT and WebSocket only, and says TLS is not served', () => {
    expect(shownEndpoints(plain).map((e) => e.url)).toEqual(['mqtt://127.0.0.1:1883', 'ws://127.0.0.1:8083/mqtt']);
    expect(servesTls(plain)).toBe(false);
    expect(websocketChoices(plain, true)).toEqual([['ws', 'ws://127.0.0.1:8083/mqtt']]);
  });

  it('with TLS, shows all four in order', () => {
    expect(shownEndpoints(withTls).map((e) => [e.key, e.label])).toEqual([
      ['mqtt', 'MQTT over TCP'],
      ['mqtts', 'MQTT over TLS'],
      ['ws', 'MQTT over WebSocket'],
      ['wss', 'MQTT over secure WebSocket'],
    ]);
    expect(servesTls(withTls)).toBe(true);
  });

  it('offers WSS first to a page served over https', () => {
    expect(websocketChoices(withTls, true).map(([k]) => k)).toEqual(['wss', 'ws']);
    expect(websocketChoices(withTls, false).map(([k]) => k)).toEqual(['ws', 'wss']);
  });
});
