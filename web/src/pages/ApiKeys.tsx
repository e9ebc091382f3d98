// Tenant API keys: for scripts and servers that call the REST API for this
// tenant. A key is shown once, when it is created.

import { tenantPath } from '../lib/api';
import { KeyManager } from '../components/KeyManager';
import type { PanelProps } from './TenantPage';

export function ApiKeys({ tenant }: PanelProps) {
  return (
    <>
      <h2>API keys</h2>
      <p class="lead">
        An API key lets a script or a server call the REST API for this tenant only: mint tokens, publish, read usage.
      </p>
      <KeyManager
        path={tenantPath(tenant.id, '/api-keys')}
        placeholder="e.g. provisioning script"
        removeLabel="Revoke"
        removed={<p>Scripts using this key get 401 from now on.</p>}
        testId="api-key"
      />
    </>
  );
}
