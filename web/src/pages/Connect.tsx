// Copy-paste snippets for the clients people use, with this tenant's real
// endpoint and a token minted for them.

import { useState } from 'preact/hooks';
import { api, fieldOf, tenantPath } from '../lib/api';
import { relative } from '../lib/format';
import { useAction } from '../lib/hooks';
import { deviceSnippets } from '../lib/snippets';
import type { Minted } from '../lib/types';
import { CopyButton, ErrorNote, Field } from '../components/ui';
import type { PanelProps } from './TenantPage';

export function Connect({ tenant }: PanelProps) {
  const [clientId, setClientId] = useState('device-1');
  const [minted, setMinted] = useState<Minted | undefined>();
  const [tab, setTab] = useState('mosquitto');
  const { busy, error, run } = useAction();
  const onMint = async (e: Event) => {
    e.preventDefault();
    // Not bound to the client id: the snippets run a publisher and a subscriber side by side.
    const token = await run(() => api<Minted>('POST', tenantPath(tenant.id, '/tokens'), { ttl_seconds: 86400 }));
    if (token) setMinted(token);
  };
  const snippets = minted
    ? deviceSnippets({ endpoints: tenant.endpoints, token: minted.token, clientId: clientId || 'device-1', topic: 'demo/hello' })
    : [];
  const current = snippets.find((s) => s.id === tab) ?? snippets[0];
  return (
    <>
      <h2>Connect a device</h2>
      <p class="lead">
        Mint a token for a device, then run one of these. The token covers the whole namespace of this tenant for one
        day; mint narrower ones on the <a href={`/tenants/${tenant.id}/tokens`}>Tokens</a> tab.
      </p>
      <form class="inline-form" onSubmit={onMint} noValidate>
        <Field
          label="Client id for the snippets"
          name="client_id"
          value={clientId}
          onValue={setClientId}
          error={error && fieldOf(error.message, ['client_id']) ? error.message : undefined}
        />
        <button type="submit" class="button-primary" disabled={busy}>
          {busy ? 'Minting…' : minted ? 'Mint a new token' : 'Mint a token and show the snippets'}
        </button>
        <ErrorNote error={error} />
      </form>
      {minted && current && (
        <>
          <p class="hint">
            Token <code>{minted.jti}</code>, expires {relative(minted.expires_at)}.
          </p>
          <div role="tablist" aria-label="Client" class="snippet-tabs">
            {snippets.map((s) => (
              <button
                key={s.id}
                type="button"
                role="tab"
                id={`tab-${s.id}`}
                aria-selected={s.id === current.id}
                aria-controls="snippet-panel"
                onClick={() => setTab(s.id)}
              >
                {s.title}
              </button>
            ))}
          </div>
          <div role="tabpanel" id="snippet-panel" aria-labelledby={`tab-${current.id}`} class="snippet">
            <div class="snippet-bar">
              <span>{current.language}</span>
              <CopyButton value={current.code} />
            </div>
            {/* Focusable, so that a keyboard can scroll a long line. */}
            <pre data-testid={`snippet-${current.id}`} tabIndex={0} aria-label={`${current.title} snippet`}>
              <code>{current.code}</code>
            </pre>
          </div>
        </>
      )}
    </>
  );
}
