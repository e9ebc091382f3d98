// The live MQTT client: a short-lived token minted through the API, MQTT.js
// over WebSocket to the tenant's endpoint, subscribe, publish, and a log.

import { useEffect, useRef, useState } from 'preact/hooks';
import { api, tenantPath } from '../lib/api';
import { websocketChoices } from '../lib/endpoints';
import { clock, relative } from '../lib/format';
import { useAction, useModule } from '../lib/hooks';
import type { LiveConnection, LiveState } from '../lib/live';
import { appendToLog, encodePayload, renderPayload, type LoggedMessage } from '../lib/messages';
import { filterProblem, topicMatches, topicProblem } from '../lib/topic';
import type { Minted } from '../lib/types';
import { Checkbox, Empty, ErrorNote, Field, Loading, Select } from '../components/ui';
import type { PanelProps } from './TenantPage';

/** Browser tokens live 10 minutes: enough for a session, little to lose. */
const BROWSER_TOKEN_TTL = 600;

interface Subscription {
  filter: string;
  granted: number;
}

const QOS: [string, string][] = [
  ['0', 'QoS 0'],
  ['1', 'QoS 1'],
  ['2', 'QoS 2'],
];

let logId = 0;

export function Live({ tenant }: PanelProps) {
  const live = useModule(() => import('../lib/live'));
  const choices = websocketChoices(tenant.endpoints, location.protocol === 'https:');
  const [endpoint, setEndpoint] = useState<'ws' | 'wss'>(choices[0][0]);
  const [clientId, setClientId] = useState(() => `console-${Math.random().toString(36).slice(2, 8)}`);
  const [state, setState] = useState<LiveState>('idle');
  const [detail, setDetail] = useState<string | undefined>();
  const [token, setToken] = useState<Minted | undefined>();
  const [subs, setSubs] = useState<Subscription[]>([]);
  const [log, setLog] = useState<LoggedMessage[]>([]);
  const connection = useRef<LiveConnection | undefined>(undefined);
  const mint = useAction();

  useEffect(() => () => connection.current?.disconnect(), []);

  const connect = async (e: Event) => {
    e.preventDefault();
    if (!live.module) return;
    const minted = await mint.run(() =>
      api<Minted>('POST', tenantPath(tenant.id, '/tokens'), { client_id: clientId, ttl_seconds: BROWSER_TOKEN_TTL }),
    );
    if (!minted) return;
    setToken(minted);
    setSubs([]);
    const c = new live.module.LiveConnection({
      onState: (s, d) => {
        setState(s);
        setDetail(d);
      },
      onMessage: (topic, payload, qos, retain) =>
        setLog((l) =>
          appendToLog(l, { id: (logId += 1), at: new Date(), direction: 'in', topic, qos, retain, body: renderPayload(payload) }),
        ),
    });
    connection.current = c;
    c.connect(tenant.endpoints[endpoint] ?? tenant.endpoints.ws, clientId, minted.token);
  };

  if (live.error) return <ErrorNote error={`The MQTT client could not be loaded: ${live.error.message}`} />;
  if (!live.module) return <Loading what="the MQTT client" />;
  const connected = state === 'connected';
  const busy = state === 'connecting' || mint.busy;
  return (
    <>
      <h2>Live client</h2>
      <p class="lead">
        An MQTT 5 client in this page, connected over WebSocket with a token minted for it (valid 10 minutes).
      </p>
      <form class="inline-form" onSubmit={connected ? (e) => (e.preventDefault(), connection.current?.disconnect()) : connect}>
        <Select
          label="Endpoint"
          name="endpoint"
          value={endpoint}
          options={choices}
          onChange={setEndpoint}
        />
        <Field
          label="Client id"
          name="client_id"
          value={clientId}
          disabled={connected || busy}
          onValue={setClientId}
        />
        <button type="submit" class={connected ? '' : 'button-primary'} disabled={busy}>
          {connected ? 'Disconnect' : busy ? 'Connecting…' : 'Connect'}
        </button>
      </form>
      <ErrorNote error={mint.error} />
      <p class={`connection connection-${state}`} role="status" aria-live="polite" data-testid="connection-state">
        <span class="dot" aria-hidden="true" />
        <strong>{stateLabel(state)}</strong>
        {detail && state !== 'connected' && <span> — {detail}</span>}
        {connected && token && <span> — token expires {relative(token.expires_at)}</span>}
      </p>
      <div class="two-columns">
        <SubscribeForm connection={connection.current} enabled={connected} subs={subs} setSubs={setSubs} />
        <PublishForm
          connection={connection.current}
          enabled={connected}
          onSent={(m) => setLog((l) => appendToLog(l, { ...m, id: (logId += 1) }))}
        />
      </div>
      <MessageLog log={log} onClear={() => setLog([])} />
    </>
  );
}

function stateLabel(state: LiveState): string {
  return { idle: 'Not connected', connecting: 'Connecting', connected: 'Connected', closed: 'Closed' }[state];
}

function SubscribeForm(props: {
  connection?: LiveConnection;
  enabled: boolean;
  subs: Subscription[];
  setSubs: (f: (s: Subscription[]) => Subscription[]) => void;
}) {
  const [filter, setFilter] = useState('demo/#');
  const [qos, setQos] = useState('1');
  const [noLocal, setNoLocal] = useState(false);
  const [rap, setRap] = useState(false);
  const [rh, setRh] = useState('0');
  const [error, setError] = useState<string | undefined>();
  const onSubscribe = async (e: Event) => {
    e.preventDefault();
    const problem = filterProblem(filter);
    if (problem) return setError(problem);
    setError(undefined);
    try {
      const granted = await props.connection!.subscribe(filter, {
        qos: Number(qos) as 0 | 1 | 2,
        noLocal,
        retainAsPublished: rap,
        retainHandling: Number(rh) as 0 | 1 | 2,
      });
      props.setSubs((s) => [...s.filter((x) => x.filter !== filter), { filter, granted }]);
    } catch (err) {
      setError((err as Error).message);
    }
  };
  const onUnsubscribe = async (f: string) => {
    try {
      await props.connection!.unsubscribe(f);
      props.setSubs((s) => s.filter((x) => x.filter !== f));
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <form class="panel" onSubmit={onSubscribe} noValidate aria-labelledby="subscribe-title">
      <h3 id="subscribe-title">Subscribe</h3>
      <Field label="Topic filter" name="filter" value={filter} error={error} onValue={setFilter} />
      <div class="row">
        <Select label="QoS" name="sub_qos" value={qos} options={QOS} onChange={setQos} />
        <Select
          label="Retained messages"
          name="retain_handling"
          value={rh}
          options={[
            ['0', 'Send at subscribe'],
            ['1', 'Send if new subscription'],
            ['2', 'Do not send'],
          ]}
          onChange={setRh}
        />
      </div>
      <div class="row checks">
        <Checkbox label="No local" checked={noLocal} onChange={setNoLocal} />
        <Checkbox label="Retain as published" checked={rap} onChange={setRap} />
      </div>
      <button type="submit" disabled={!props.enabled}>
        Subscribe
      </button>
      {props.subs.length > 0 && (
        <ul class="subscriptions" aria-label="Subscriptions">
          {props.subs.map((s) => (
            <li key={s.filter}>
              <code>{s.filter}</code> <span class="hint">granted QoS {s.granted}</span>
              <button
                type="button"
                class="button-small"
                aria-label={`Unsubscribe ${s.filter}`}
                disabled={!props.enabled}
                onClick={() => onUnsubscribe(s.filter)}
              >
                Unsubscribe
              </button>
            </li>
          ))}
        </ul>
      )}
    </form>
  );
}

function PublishForm(props: {
  connection?: LiveConnection;
  enabled: boolean;
  onSent: (m: Omit<LoggedMessage, 'id'>) => void;
}) {
  const [topic, setTopic] = useState('demo/hello');
  const [payload, setPayload] = useState('{"temperature": 21.5}');
  const [format, setFormat] = useState<'json' | 'text'>('json');
  const [qos, setQos] = useState('1');
  const [retain, setRetain] = useState(false);
  const [error, setError] = useState<{ field: 'topic' | 'payload' | 'action'; text: string } | undefined>();
  const [sent, setSent] = useState<string | undefined>();
  const onPublish = async (e: Event) => {
    e.preventDefault();
    setSent(undefined);
    const problem = topicProblem(topic);
    if (problem) return setError({ field: 'topic', text: problem });
    const encoded = encodePayload(payload, format);
    if (encoded.error !== undefined) return setError({ field: 'payload', text: encoded.error });
    setError(undefined);
    try {
      const q = Number(qos) as 0 | 1 | 2;
      await props.connection!.publish(topic, encoded.payload!, q, retain);
      props.onSent({
        at: new Date(),
        direction: 'out',
        topic,
        qos: q,
        retain,
        body: renderPayload(new TextEncoder().encode(encoded.payload!)),
      });
      setSent(q === 0 ? 'Sent.' : 'Sent and acknowledged by the broker.');
    } catch (err) {
      setError({ field: 'action', text: (err as Error).message });
    }
  };
  return (
    <form class="panel" onSubmit={onPublish} noValidate aria-labelledby="publish-title">
      <h3 id="publish-title">Publish</h3>
      <Field
        label="Topic"
        name="topic"
        value={topic}
        error={error?.field === 'topic' ? error.text : undefined}
        onValue={setTopic}
      />
      <Field
        label="Payload"
        name="payload"
        multiline
        rows={4}
        value={payload}
        error={error?.field === 'payload' ? error.text : undefined}
        onValue={setPayload}
      />
      <div class="row">
        <Select
          label="Format"
          name="format"
          value={format}
          options={[
            ['json', 'JSON'],
            ['text', 'Text'],
          ]}
          onChange={setFormat}
        />
        <Select label="QoS" name="pub_qos" value={qos} options={QOS} onChange={setQos} />
      </div>
      <div class="row checks">
        <Checkbox label="Retain" checked={retain} onChange={setRetain} />
      </div>
      <button type="submit" disabled={!props.enabled}>
        Publish
      </button>
      {error?.field === 'action' && <ErrorNote error={error.text} />}
      {sent && (
        <p class="notice notice-ok" role="status">
          {sent}
        </p>
      )}
    </form>
  );
}

function MessageLog({ log, onClear }: { log: LoggedMessage[]; onClear: () => void }) {
  const [filter, setFilter] = useState('');
  const valid = !filter || !filterProblem(filter);
  const shown = filter && valid ? log.filter((m) => topicMatches(filter, m.topic)) : log;
  return (
    <section aria-labelledby="log-title">
      <div class="toolbar">
        <h3 id="log-title">Messages</h3>
        <Field
          label="Show topics matching"
          name="log_filter"
          value={filter}
          placeholder="e.g. demo/+/temperature"
          error={valid ? undefined : filterProblem(filter)}
          onValue={setFilter}
        />
        <button type="button" class="button-small" onClick={onClear} disabled={log.length === 0}>
          Clear
        </button>
      </div>
      {shown.length === 0 ? (
        <Empty>{log.length === 0 ? 'No messages yet. Subscribe, then publish.' : 'No message matches the filter.'}</Empty>
      ) : (
        <ol class="log" data-testid="message-log">
          {shown.map((m) => (
            <li key={m.id} class={`log-${m.direction}`}>
              <div class="log-head">
                <time dateTime={m.at.toISOString()}>{clock(m.at)}</time>
                <span class="direction">{m.direction === 'in' ? 'received' : 'sent'}</span>
                <code class="topic">{m.topic}</code>
                <span class="badge">QoS {m.qos}</span>
                {m.retain && <span class="badge">retained</span>}
                <span class="hint">{m.body.size} B</span>
              </div>
              <pre class={`payload payload-${m.body.kind}`}>{m.body.text}</pre>
            </li>
          ))}
        </ol>
      )}
    </section>
  );
}
