// The account's tenants: list and create.

import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { api, fieldOf } from '../lib/api';
import { dateTime } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import type { Tenant } from '../lib/types';
import { ErrorNote, Field } from '../components/ui';
import { DataTable } from '../components/DataTable';

export function Tenants() {
  const tenants = useLoad(() => api<Tenant[]>('GET', '/v1/tenants'), []);
  return (
    <section>
      <h1>Tenants</h1>
      <p class="lead">A tenant is an isolated MQTT namespace with its own limits, keys and tokens.</p>
      <CreateTenant />
      <h2>Your tenants</h2>
      <DataTable
        what="tenants"
        loaded={tenants}
        empty="No tenants yet. Create one above to get endpoints and tokens."
        columns={['Name', 'Id', 'Plan', 'Status', 'Created']}
        rowKey={(t) => t.id}
        cells={(t) => [
          <a href={`/tenants/${t.id}`}>{t.name}</a>,
          <code>{t.id}</code>,
          t.plan,
          <span class={`status status-${t.status}`}>{t.status}</span>,
          dateTime(t.created_at),
        ]}
      />
    </section>
  );
}

function CreateTenant() {
  const [name, setName] = useState('');
  const { busy, error, run } = useAction();
  const { route } = useLocation();
  const field = error && fieldOf(error.message, ['name']);
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    const tenant = await run(() => api<Tenant>('POST', '/v1/tenants', { name }));
    if (tenant) route(`/tenants/${tenant.id}`);
  };
  return (
    <form class="inline-form" onSubmit={onSubmit} noValidate>
      <Field
        label="New tenant name"
        name="name"
        value={name}
        placeholder="e.g. Greenhouse sensors"
        error={field ? error?.message : undefined}
        onValue={setName}
      />
      <button type="submit" class="button-primary" disabled={busy}>
        {busy ? 'Creating…' : 'Create tenant'}
      </button>
      {!field && <ErrorNote error={error} />}
    </form>
  );
}
