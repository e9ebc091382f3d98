// Tenant API keys: for scripts and servers that call the REST API for this
// tenant. A key is shown once, when it is created.

import { useState } from 'preact/hooks';
import { api, fieldOf, tenantPath } from '../lib/api';
import { dateTime } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import type { ApiKey } from '../lib/types';
import { Copyable, ErrorNote, Field } from '../components/ui';
import { ConfirmButton, DataTable } from '../components/DataTable';
import type { PanelProps } from './TenantPage';

export function ApiKeys({ tenant }: PanelProps) {
  const keys = useLoad(() => api<ApiKey[]>('GET', tenantPath(tenant.id, '/api-keys')), [tenant.id]);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<ApiKey | undefined>();
  const create = useAction();
  const revoke = useAction();
  const field = create.error && fieldOf(create.error.message, ['name']);
  const onCreate = async (e: Event) => {
    e.preventDefault();
    const key = await create.run(() => api<ApiKey>('POST', tenantPath(tenant.id, '/api-keys'), { name }));
    if (key) {
      setCreated(key);
      setName('');
      keys.reload();
    }
  };
  const onRevoke = async (key: ApiKey) => {
    await revoke.run(() => api('DELETE', tenantPath(tenant.id, `/api-keys/${key.id}`)));
    keys.reload();
  };
  return (
    <>
      <h2>API keys</h2>
      <p class="lead">
        An API key lets a script or a server call the REST API for this tenant only: mint tokens, publish, read usage.
      </p>
      <form class="inline-form" onSubmit={onCreate} noValidate>
        <Field
          label="Key name"
          name="name"
          value={name}
          placeholder="e.g. provisioning script"
          error={field ? create.error?.message : undefined}
          onValue={setName}
        />
        <button type="submit" class="button-primary" disabled={create.busy}>
          {create.busy ? 'Creating…' : 'Create API key'}
        </button>
        {!field && <ErrorNote error={create.error} />}
      </form>
      {created?.key && (
        <div class="secret" role="status">
          <p>
            <strong>Copy the key “{created.name}” now.</strong> It is not shown again.
          </p>
          <Copyable value={created.key} testId="new-api-key" />
          <button type="button" class="button-small" onClick={() => setCreated(undefined)}>
            I have copied it
          </button>
        </div>
      )}
      <DataTable
        what="API keys"
        loaded={keys}
        error={revoke.error}
        testId="api-keys-table"
        empty="No API keys yet."
        columns={['Name', 'Id', 'Created']}
        rowKey={(k) => k.id}
        cells={(k) => [k.name, <code>{k.id}</code>, dateTime(k.created_at)]}
        action={(k) => (
          <ConfirmButton
            small
            label="Revoke"
            ariaLabel={`Revoke API key ${k.name}`}
            title={`Revoke the API key “${k.name}”?`}
            confirmLabel="Revoke"
            onConfirm={() => onRevoke(k)}
          >
            <p>Scripts using this key get 401 from now on.</p>
          </ConfirmButton>
        )}
      />
    </>
  );
}
