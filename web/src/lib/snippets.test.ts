import { describe, expect, it } from 'vitest';
import { accountKeyUsage, deviceSnippets, hostPort, shellQuote } from './snippets';

const endpoints = {
  mqtt: 'mqtt://broker.example.com:1883',
  mqtts: 'mqtts://broker.example.com:8883',
  ws: 'ws://broker.example.com:8083/mqtt',
  wss: 'wss://broker.example.com:8084/mqtt',
};

describe('snippets', () => {
  it('reads host and port from an endpoint URL', () => {
    expect(hostPort('mqtt://127.0.0.1:41883')).toEqual({ host: '127.0.0.1', port: 41883 });
    expect(hostPort('mqtts://b.example')).toEqual({ host: 'b.example', port: 8883 });
    expect(hostPort('mqtt://[::1]:1883')).toEqual({ host: '::1', port: 1883 });
  });

  it('quotes for the shell so that nothing is interpreted', () => {
    expect(shellQuote("it's $HOME")).toBe(`'it'"'"'s $HOME'`);
  });

  it('fills every snippet with the real endpoint, token and client id', () => {
    const token = 'eyJhbGciOiJFZERTQSJ9.eyJ0bnQiOiJ4In0.c2ln';
    const snippets = deviceSnippets({ endpoints, token, clientId: 'device-1', topic: 'demo/hello' });
    expect(snippets.map((s) => s.id)).toEqual(['mosquitto', 'paho', 'mqttjs', 'rumqttc']);
    for (const s of snippets) {
      expect(s.code).toContain(token);
      expect(s.code).toContain('device-1');
      expect(s.code).toContain('demo/');
    }
    const [mosquitto, paho, mqttjs, rumqttc] = snippets;
    expect(mosquitto.code).toContain("-h 'broker.example.com' -p 1883 -V mqttv5");
    expect(mosquitto.code).toContain("-t 'demo/#'");
    expect(paho.code).toContain('client.connect("broker.example.com", 1883)');
    expect(mqttjs.code).toContain('mqtt.connect("ws://broker.example.com:8083/mqtt"');
    expect(rumqttc.code).toContain('MqttOptions::new("device-1", "broker.example.com", 1883)');
  });
});

describe('account key usage', () => {
  it('sets the variables the provider reads and lists the tenants with them', () => {
    const code = accountKeyUsage('https://aerie.example.com', 'aerie_acct_K3y');
    expect(code.split('\n')).toEqual([
      "export AERIE_ENDPOINT='https://aerie.example.com'",
      "export AERIE_TOKEN='aerie_acct_K3y'",
      'curl -sS -H "Authorization: Bearer $AERIE_TOKEN" "$AERIE_ENDPOINT/v1/tenants"',
    ]);
  });

  it('drops a trailing slash so that the path joins once', () => {
    expect(accountKeyUsage('http://127.0.0.1:8080/', 'k')).toContain("AERIE_ENDPOINT='http://127.0.0.1:8080'\n");
  });
});
