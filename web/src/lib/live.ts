// The live client's MQTT side: MQTT.js (v5) over WebSocket, its events turned
// into states and reason codes a person can read. Loaded on the live page only.

import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { isFailure, reasonName } from './reason';

export type LiveState = 'idle' | 'connecting' | 'connected' | 'closed';

export interface LiveEvents {
  onState: (state: LiveState, detail?: string) => void;
  onMessage: (topic: string, payload: Uint8Array, qos: 0 | 1 | 2, retain: boolean) => void;
}

export interface SubscribeOptions {
  qos: 0 | 1 | 2;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
}

/** "0x98 Administrative action (admin_disconnect)" */
function describe(code: number | undefined, reasonString?: string): string {
  const name = code === undefined ? 'no reason code' : reasonName(code);
  return reasonString ? `${name} (${reasonString})` : name;
}

export class LiveConnection {
  private client?: MqttClient;
  private ended = false;

  constructor(private readonly events: LiveEvents) {}

  connect(url: string, clientId: string, token: string): void {
    const options: IClientOptions = {
      protocolVersion: 5,
      clientId,
      username: 'console',
      password: token,
      clean: true,
      // A refused or closed connection is shown, not retried: the token may be revoked.
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      // MQTT.js would run its timers in a Worker made from a blob: URL, which
      // the console's CSP (script-src 'self') forbids. Native timers are
      // throttled to one a minute in a background tab, so keep-alive is 60 s
      // (the broker waits 1.5 times that).
      timerVariant: 'native',
      keepalive: 60,
    };
    this.events.onState('connecting', url);
    const client = mqtt.connect(url, options);
    this.client = client;
    let why: string | undefined;
    client.on('connect', () => this.events.onState('connected', url));
    client.on('error', (err: Error & { code?: number | string }) => {
      why =
        typeof err.code === 'number'
          ? `Refused: ${describe(err.code)}`
          : `Error: ${err.message}`;
    });
    client.on('disconnect', (packet) => {
      why = `Disconnected by the broker: ${describe(packet.reasonCode, packet.properties?.reasonString)}`;
    });
    client.on('close', () => {
      if (this.ended) return;
      this.ended = true;
      this.events.onState('closed', why ?? 'The connection closed.');
      client.end(true);
    });
    client.on('message', (topic, payload, packet) => {
      this.events.onMessage(topic, new Uint8Array(payload), packet.qos, packet.retain);
    });
  }

  /** Resolves to the granted QoS, or rejects with the broker's reason. */
  subscribe(filter: string, o: SubscribeOptions): Promise<number> {
    return new Promise((resolve, reject) => {
      const client = this.connected();
      client.subscribe(filter, { qos: o.qos, nl: o.noLocal, rap: o.retainAsPublished, rh: o.retainHandling }, (err, granted) => {
        if (err) return reject(new Error(err.message));
        const code = granted?.[0]?.qos ?? 0x80;
        if (isFailure(code)) return reject(new Error(`Refused: ${describe(code)}`));
        resolve(code);
      });
    });
  }

  unsubscribe(filter: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.connected().unsubscribe(filter, (err) => (err ? reject(new Error(err.message)) : resolve()));
    });
  }

  /** Resolves when the broker acknowledged (QoS 1/2) or the packet left (QoS 0). */
  publish(topic: string, payload: string, qos: 0 | 1 | 2, retain: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.connected().publish(topic, payload, { qos, retain }, (err) => {
        if (!err) return resolve();
        const code = (err as Error & { code?: number }).code;
        reject(new Error(typeof code === 'number' ? `Refused: ${describe(code)}` : err.message));
      });
    });
  }

  disconnect(): void {
    if (!this.client) return;
    this.ended = true;
    this.client.end(false, { reasonCode: 0 });
    this.events.onState('closed', 'You disconnected.');
  }

  private connected(): MqttClient {
    if (!this.client?.connected) throw new Error('Not connected.');
    return this.client;
  }
}
