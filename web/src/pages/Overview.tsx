// A tenant at a glance: where to connect, what the plan allows, what was
// used; rename and delete.

import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, fieldOf, tenantPath } from '../lib/api';
import { servesTls, shownEndpoints } from '../lib/endpoints';
import { bytes, count, seconds } from '../lib/format';
import { useAction } from '../lib/hooks';
import type { Limits } from '../lib/types';
import { Copyable, ErrorNote, Field } from '../components/ui';
import { ConfirmButton } from '../components/DataTable';
import { UsageCharts } from '../components/UsageCharts';
import type { PanelProps } from './TenantPage';

const LIMITS: [keyof Limits, string, (v: number) => string][] = [
  ['connections', 'Concurrent connections', count],
  ['connect_rate', 'Connects per second', count],
  ['publish_rate_msgs', 'Messages per second (tenant)', count],
  ['publish_rate_bytes', 'Payload per second (tenant)', bytes],
  ['client_publish_rate_msgs', 'Messages per second (per client)', count],
  ['client_publish_rate_bytes', 'Payload per second (per client)', bytes],
  ['max_packet_size', 'Largest packet', bytes],
  ['subscriptions_per_client', 'Subscriptions per client', count],
  ['retained_messages', 'Retained messages', count],
  ['retained_bytes', 'Retained payload', bytes],
  ['session_expiry_max', 'Longest session expiry', seconds],
  ['queued_messages', 'Queued messages per offline session', count],
  ['inflight', 'QoS 1/2 messages in flight per client', count],
  ['message_log_max_age', 'Message log kept for', seconds],
  ['message_log_max_bytes', 'Message log size', bytes],
];

export function Overview({ tenant, reloadTenant }: PanelProps) {
  return (
    <>
      <h2>Endpoints</h2>
      <dl class="endpoints">
        {shownEndpoints(tenant.endpoints).map(({ key, label, url }) => (
          <div key={key}>
            <dt>{label}</dt>
            <dd>
              <Copyable value={url} testId={`endpoint-${key}`} />
            </dd>
          </div>
        ))}
      </dl>
      {!servesTls(tenant.endpoints) && (
        <p class="hint" data-testid="no-tls">
          TLS is not configured on this server, so there is no MQTTS or WSS endpoint.
        </p>
      )}
      <p class="hint">
        Devices connect with a token as the MQTT password; see <a href={`/tenants/${tenant.id}/connect`}>Connect a device</a>.
      </p>
      <h2>Usage, last 24 hours</h2>
      <UsageCharts tid={tenant.id} />
      <h2>
        Plan <span class="badge">{tenant.plan}</span> <span class={`status status-${tenant.status}`}>{tenant.status}</span>
      </h2>
      <div class="table-wrap">
        <table class="limits">
          <tbody>
            {LIMITS.map(([key, label, format]) => (
              <tr key={key}>
                <th scope="row">{label}</th>
                <td>{format(tenant.limits[key])}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>Settings</h2>
      <Rename tid={tenant.id} name={tenant.name} onRenamed={reloadTenant} />
      <Delete tid={tenant.id} name={tenant.name} />
    </>
  );
}

function Rename({ tid, name, onRenamed }: { tid: string; name: string; onRenamed: () => void }) {
  const [value, setValue] = useState(name);
  const { busy, error, run } = useAction();
  const field = error && fieldOf(error.message, ['name']);
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    if (await run(() => api('PATCH', tenantPath(tid), { name: value }))) onRenamed();
  };
  return (
    <form class="inline-form" onSubmit={onSubmit} noValidate>
      <Field
        label="Tenant name"
        name="name"
        value={value}
        error={field ? error?.message : undefined}
        onValue={setValue}
      />
      <button type="submit" disabled={busy || value === name}>
        {busy ? 'Renaming…' : 'Rename'}
      </button>
      {!field && <ErrorNote error={error} />}
    </form>
  );
}

function Delete({ tid, name }: { tid: string; name: string }) {
  const { busy, error, run } = useAction();
  const { route } = useLocation();
  const remove = async () => {
    const done = await run(async () => {
      await api('DELETE', tenantPath(tid));
      return true;
    });
    if (done) route('/tenants');
  };
  return (
    <div class="danger-zone">
      <p>Deleting the tenant disconnects its clients at once; its API keys and tokens stop working. It cannot be undone.</p>
      <ConfirmButton
        label={busy ? 'Deleting…' : 'Delete tenant'}
        disabled={busy}
        title={`Delete ${name}?`}
        confirmLabel="Delete for good"
        typeToConfirm={name}
        onConfirm={remove}
      >
        <p>Every client of this tenant is disconnected, and its keys and tokens stop working.</p>
      </ConfirmButton>
      <ErrorNote error={error} />
    </div>
  );
}
