// The tenant's own token issuers: tokens signed by them are accepted for this
// tenant only.

import { useState } from 'preact/hooks';
import { api, fieldOf, tenantPath } from '../lib/api';
import { dateTime } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import type { Issuer } from '../lib/types';
import { ErrorNote, Field, Select } from '../components/ui';
import { ConfirmButton, DataTable } from '../components/DataTable';
import type { PanelProps } from './TenantPage';

type Source = 'jwks_url' | 'public_key_pem' | 'jwks';

const SOURCES: [Source, string][] = [
  ['jwks_url', 'JWKS URL'],
  ['public_key_pem', 'Public key (PEM)'],
  ['jwks', 'JWKS (JSON)'],
];

function issuerBody(issuer: string, source: Source, material: string): Record<string, unknown> {
  if (source === 'jwks') {
    try {
      return { issuer, jwks: JSON.parse(material) };
    } catch {
      throw new Error('jwks is not valid JSON');
    }
  }
  return { issuer, [source]: source === 'jwks_url' ? material.trim() : material };
}

export function Issuers({ tenant }: PanelProps) {
  const issuers = useLoad(() => api<Issuer[]>('GET', tenantPath(tenant.id, '/issuers')), [tenant.id]);
  const [issuer, setIssuer] = useState('');
  const [source, setSource] = useState<Source>('jwks_url');
  const [material, setMaterial] = useState('');
  const register = useAction();
  const remove = useAction();
  const field = register.error && fieldOf(register.error.message, ['issuer', 'jwks_url', 'public_key_pem', 'jwks']);
  const onRegister = async (e: Event) => {
    e.preventDefault();
    const done = await register.run(() =>
      api<Issuer>('POST', tenantPath(tenant.id, '/issuers'), issuerBody(issuer.trim(), source, material)),
    );
    if (done) {
      setIssuer('');
      setMaterial('');
      issuers.reload();
    }
  };
  const onDelete = async (i: Issuer) => {
    await remove.run(() => api('DELETE', tenantPath(tenant.id, `/issuers/${i.id}`)));
    issuers.reload();
  };
  return (
    <>
      <h2>Register an issuer</h2>
      <p class="lead">
        Tokens your own service signs (with <code>tnt: "{tenant.id}"</code>, <code>aud: "mqtt"</code> and this{' '}
        <code>iss</code>) are accepted for this tenant only. Asymmetric keys only: RSA, P-256/P-384 or Ed25519.
      </p>
      <form onSubmit={onRegister} noValidate class="stacked-form">
        <Field
          label="Issuer (the tokens' iss)"
          name="issuer"
          value={issuer}
          placeholder="https://auth.example.com/"
          error={field === 'issuer' ? register.error?.message : undefined}
          onValue={setIssuer}
        />
        <Select label="Keys from" name="source" value={source} options={SOURCES} onChange={setSource} />
        <Field
          label={SOURCES.find(([s]) => s === source)![1]}
          name={source}
          multiline={source !== 'jwks_url'}
          rows={6}
          value={material}
          placeholder={
            source === 'jwks_url'
              ? 'https://auth.example.com/.well-known/jwks.json'
              : source === 'public_key_pem'
                ? '-----BEGIN PUBLIC KEY-----'
                : '{"keys": [...]}'
          }
          error={field && field !== 'issuer' ? register.error?.message : undefined}
          onValue={setMaterial}
        />
        {!field && <ErrorNote error={register.error} />}
        <button type="submit" class="button-primary" disabled={register.busy}>
          {register.busy ? 'Registering…' : 'Register issuer'}
        </button>
      </form>
      <h2>Issuers</h2>
      <DataTable
        what="issuers"
        loaded={issuers}
        error={remove.error}
        empty="No issuers of your own: devices use tokens minted here."
        columns={['Issuer', 'Keys', 'Registered']}
        rowKey={(i) => i.id}
        cells={(i) => [
          <code>{i.issuer}</code>,
          <>
            {i.kind === 'jwks_url' ? <code>{i.jwks_url}</code> : i.kind}
            {i.key_ids.length > 0 && <span class="hint"> ({i.key_ids.join(', ')})</span>}
          </>,
          dateTime(i.created_at),
        ]}
        action={(i) => (
          <ConfirmButton
            small
            label="Remove"
            ariaLabel={`Remove issuer ${i.issuer}`}
            title="Remove this issuer?"
            confirmLabel="Remove"
            onConfirm={() => onDelete(i)}
          >
            <p>
              Clients connected with tokens from <code>{i.issuer}</code> are disconnected, and its tokens are no
              longer accepted.
            </p>
          </ConfirmButton>
        )}
      />
    </>
  );
}
