// "Connect a device" snippets, filled with the tenant's real endpoints and a
// freshly minted token, for the clients people actually use.

import type { Endpoints } from './types';

export interface Snippet {
  id: string;
  title: string;
  language: string;
  code: string;
}

export interface SnippetInput {
  endpoints: Endpoints;
  token: string;
  clientId: string;
  topic: string;
}

export interface HostPort {
  host: string;
  port: number;
}

const DEFAULT_PORTS: Record<string, number> = { 'mqtt:': 1883, 'mqtts:': 8883, 'ws:': 80, 'wss:': 443 };

/** "mqtt://broker.example:1883" -> {host: "broker.example", port: 1883}. */
export function hostPort(endpoint: string): HostPort {
  const url = new URL(endpoint);
  const port = url.port ? Number(url.port) : DEFAULT_PORTS[url.protocol] ?? 1883;
  // IPv6 literals come back bracketed; the clients want them bare.
  return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port };
}

/** A string for a POSIX shell, in single quotes. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'"'"'`)}'`;
}

export function deviceSnippets({ endpoints, token, clientId, topic }: SnippetInput): Snippet[] {
  const { host, port } = hostPort(endpoints.mqtt);
  const filter = `${topic.split('/')[0]}/#`;
  const q = shellQuote;
  const json = JSON.stringify;
  return [
    {
      id: 'mosquitto',
      title: 'mosquitto_pub / mosquitto_sub',
      language: 'sh',
      code: [
        `TOKEN=${q(token)}`,
        `# Terminal 1: watch ${filter}`,
        `mosquitto_sub -h ${q(host)} -p ${port} -V mqttv5 -i ${q(`${clientId}-sub`)} -u device -P "$TOKEN" -t ${q(filter)} -v`,
        `# Terminal 2: publish`,
        `mosquitto_pub -h ${q(host)} -p ${port} -V mqttv5 -i ${q(clientId)} -u device -P "$TOKEN" -t ${q(topic)} -m 'hello from mosquitto_pub'`,
      ].join('\n'),
    },
    {
      id: 'paho',
      title: 'Python (paho-mqtt 2)',
      language: 'python',
      code: `import paho.mqtt.client as mqtt

TOKEN = ${json(token)}


def on_connect(client, userdata, flags, reason_code, properties):
    print("connected:", reason_code)
    client.subscribe(${json(filter)}, qos=1)
    client.publish(${json(topic)}, "hello from paho", qos=1)


def on_message(client, userdata, message):
    print(message.topic, message.payload.decode())


client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=${json(clientId)}, protocol=mqtt.MQTTv5)
client.username_pw_set("device", TOKEN)
client.on_connect = on_connect
client.on_message = on_message
client.connect(${json(host)}, ${port})
client.loop_forever()
`,
    },
    {
      id: 'mqttjs',
      title: 'MQTT.js (browser or Node.js)',
      language: 'js',
      code: `import mqtt from 'mqtt';

const client = mqtt.connect(${json(endpoints.ws)}, {
  protocolVersion: 5,
  clientId: ${json(clientId)},
  username: 'device',
  password: ${json(token)},
});
client.on('connect', () => {
  client.subscribe(${json(filter)}, { qos: 1 });
  client.publish(${json(topic)}, 'hello from MQTT.js', { qos: 1 });
});
client.on('message', (topic, payload) => console.log(topic, payload.toString()));
client.on('error', (err) => console.error(err.message));
`,
    },
    {
      id: 'rumqttc',
      title: 'Rust (rumqttc 0.25, MQTT 5)',
      language: 'rust',
      code: `use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};

const TOKEN: &str = ${json(token)};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut options = MqttOptions::new(${json(clientId)}, ${json(host)}, ${port});
    options.set_credentials("device", TOKEN);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe(${json(filter)}, QoS::AtLeastOnce).await?;
    client.publish(${json(topic)}, QoS::AtLeastOnce, false, "hello from rumqttc").await?;
    loop {
        if let Event::Incoming(Packet::Publish(p)) = eventloop.poll().await? {
            println!("{} {}", String::from_utf8_lossy(&p.topic), String::from_utf8_lossy(&p.payload));
        }
    }
}
`,
    },
  ];
}

/**
 * How to use an account API key from a shell: the variables the Terraform
 * provider reads (the control plane's base URL, without `/v1`) and a first
 * call that lists the account's tenants with them.
 */
export function accountKeyUsage(origin: string, key: string): string {
  const endpoint = origin.replace(/\/+$/, '');
  return [
    `export AERIE_ENDPOINT=${shellQuote(endpoint)}`,
    `export AERIE_TOKEN=${shellQuote(key)}`,
    `curl -sS -H "Authorization: Bearer $AERIE_TOKEN" "$AERIE_ENDPOINT/v1/tenants"`,
  ].join('\n');
}
