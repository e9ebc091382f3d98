// One tenant: its name, the tabs, and the tab's panel. The tenant is loaded
// once here and handed to the panels.

import { useRoute } from 'preact-iso';
import { api, tenantPath } from '../lib/api';
import { useLoad } from '../lib/hooks';
import type { Tenant } from '../lib/types';
import { ErrorNote, Loading } from '../components/ui';
import { Overview } from './Overview';
import { Clients } from './Clients';
import { ApiKeys } from './ApiKeys';
import { Tokens } from './Tokens';
import { Issuers } from './Issuers';
import { Connect } from './Connect';
import { Live } from './Live';

export interface PanelProps {
  tenant: Tenant;
  reloadTenant: () => void;
}

const TABS: [string, string, (p: PanelProps) => preact.JSX.Element][] = [
  ['', 'Overview', Overview],
  ['live', 'Live client', Live],
  ['clients', 'Connected clients', Clients],
  ['connect', 'Connect a device', Connect],
  ['tokens', 'Tokens', Tokens],
  ['api-keys', 'API keys', ApiKeys],
  ['issuers', 'Issuers', Issuers],
];

export function TenantPage() {
  const { params } = useRoute();
  const tid = params.tid;
  const tab = params.tab ?? '';
  const tenant = useLoad(() => api<Tenant>('GET', tenantPath(tid)), [tid]);
  const current = TABS.find(([path]) => path === tab);
  if (tenant.loading && !tenant.data) return <Loading what="the tenant" />;
  if (!tenant.data || tenant.data.id !== tid) {
    return (
      <section>
        <h1>Tenant</h1>
        <ErrorNote error={tenant.error ?? 'Tenant not found.'} />
        <p>
          <a href="/tenants">All tenants</a>
        </p>
      </section>
    );
  }
  const t = tenant.data;
  const Panel = current?.[2];
  return (
    <section>
      <p class="breadcrumb">
        <a href="/tenants">Tenants</a> / <code>{t.id}</code>
      </p>
      <h1 data-testid="tenant-name">{t.name}</h1>
      <nav class="tabs" aria-label="Tenant">
        {TABS.map(([path, label]) => (
          <a
            key={path}
            href={`/tenants/${t.id}${path ? `/${path}` : ''}`}
            aria-current={path === tab ? 'page' : undefined}
          >
            {label}
          </a>
        ))}
      </nav>
      {Panel ? <Panel tenant={t} reloadTenant={tenant.reload} /> : <ErrorNote error="There is no such tab." />}
    </section>
  );
}
