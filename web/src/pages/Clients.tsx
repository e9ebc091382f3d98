// The tenant's live MQTT connections, as the broker sees them now.

import { useState } from 'preact/hooks';
import { api, tenantPath } from '../lib/api';
import { relative } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import type { ClientInfo } from '../lib/types';
import { Confirm, Empty, ErrorNote, Loading } from '../components/ui';
import type { PanelProps } from './TenantPage';

export function Clients({ tenant }: PanelProps) {
  const clients = useLoad(() => api<ClientInfo[]>('GET', tenantPath(tenant.id, '/clients')), [tenant.id]);
  const [asking, setAsking] = useState<string | undefined>();
  const { error, run } = useAction();
  const disconnect = async (clientId: string) => {
    setAsking(undefined);
    await run(() => api('DELETE', tenantPath(tenant.id, `/clients/${encodeURIComponent(clientId)}`)));
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
      <ErrorNote error={clients.error ?? error} />
      {clients.loading && !clients.data && <Loading what="clients" />}
      {clients.data && clients.data.length === 0 && (
        <Empty>
          No client is connected. Open the <a href={`/tenants/${tenant.id}/live`}>live client</a> or{' '}
          <a href={`/tenants/${tenant.id}/connect`}>connect a device</a>.
        </Empty>
      )}
      {clients.data && clients.data.length > 0 && (
        <div class="table-wrap">
          <table data-testid="clients-table">
            <thead>
              <tr>
                <th scope="col">Client id</th>
                <th scope="col">Protocol</th>
                <th scope="col">Transport</th>
                <th scope="col">Connected</th>
                <th scope="col">Subscriptions</th>
                <th scope="col">
                  <span class="visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {clients.data.map((c) => (
                <tr key={c.client_id}>
                  <td>
                    <code>{c.client_id}</code>
                  </td>
                  <td>MQTT {c.protocol}</td>
                  <td>{c.transport.toUpperCase()}</td>
                  <td title={c.connected_at}>{relative(c.connected_at)}</td>
                  <td>{c.subscriptions.length === 0 ? 'none' : c.subscriptions.join(', ')}</td>
                  <td>
                    <button
                      type="button"
                      class="button-small button-danger"
                      aria-label={`Disconnect ${c.client_id}`}
                      onClick={() => setAsking(c.client_id)}
                    >
                      Disconnect
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {asking !== undefined && (
        <Confirm
          title={`Disconnect ${asking}?`}
          confirmLabel="Disconnect"
          onConfirm={() => disconnect(asking)}
          onCancel={() => setAsking(undefined)}
        >
          <p>
            The client gets DISCONNECT 0x98 (administrative action). It may connect again unless its token is revoked.
          </p>
        </Confirm>
      )}
    </>
  );
}
