// The tenant's live MQTT connections, as the broker sees them now.

import { api, tenantPath } from '../lib/api';
import { relative } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import type { ClientInfo } from '../lib/types';
import { ConfirmButton, DataTable } from '../components/DataTable';
import type { PanelProps } from './TenantPage';

export function Clients({ tenant }: PanelProps) {
  const clients = useLoad(() => api<ClientInfo[]>('GET', tenantPath(tenant.id, '/clients')), [tenant.id]);
  const disconnect = useAction();
  const onDisconnect = async (clientId: string) => {
    await disconnect.run(() => api('DELETE', tenantPath(tenant.id, `/clients/${encodeURIComponent(clientId)}`)));
    clients.reload();
  };
  return (
    <>
      <div class="toolbar">
        <h2>Connected clients</h2>
        <button type="button" onClick={clients.reload} disabled={clients.loading}>
          {clients.loading ? 'Refreshing…' : 'Refresh'}
        </button>
      </div>
      <DataTable
        what="clients"
        loaded={clients}
        error={disconnect.error}
        testId="clients-table"
        empty={
          <>
            No client is connected. Open the <a href={`/tenants/${tenant.id}/live`}>live client</a> or{' '}
            <a href={`/tenants/${tenant.id}/connect`}>connect a device</a>.
          </>
        }
        columns={['Client id', 'Protocol', 'Transport', 'Connected', 'Subscriptions']}
        rowKey={(c) => c.client_id}
        cells={(c) => [
          <code>{c.client_id}</code>,
          `MQTT ${c.protocol}`,
          c.transport.toUpperCase(),
          <span title={c.connected_at}>{relative(c.connected_at)}</span>,
          c.subscriptions.length === 0 ? 'none' : c.subscriptions.join(', '),
        ]}
        action={(c) => (
          <ConfirmButton
            small
            label="Disconnect"
            ariaLabel={`Disconnect ${c.client_id}`}
            title={`Disconnect ${c.client_id}?`}
            confirmLabel="Disconnect"
            onConfirm={() => onDisconnect(c.client_id)}
          >
            <p>
              The client gets DISCONNECT 0x98 (administrative action). It may connect again unless its token is
              revoked.
            </p>
          </ConfirmButton>
        )}
      />
    </>
  );
}
