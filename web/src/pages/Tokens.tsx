// Device and browser tokens: mint (shown once), list, revoke. Revoking
// disconnects the devices using the token within about a second.

import { useState } from 'preact/hooks';
import { api, fieldOf, tenantPath } from '../lib/api';
import { dateTime, relative } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import { mintBody } from '../lib/mint';
import type { Minted, TokenInfo } from '../lib/types';
import { Copyable, ErrorNote, Field, Select } from '../components/ui';
import { ConfirmButton, DataTable } from '../components/DataTable';
import type { PanelProps } from './TenantPage';

const TTLS: [string, string][] = [
  ['600', '10 minutes'],
  ['3600', '1 hour'],
  ['86400', '1 day'],
  ['604800', '7 days'],
  ['2592000', '30 days'],
];

const FIELDS = ['client_id', 'pub', 'sub', 'ttl_seconds'];

export function Tokens({ tenant }: PanelProps) {
  const tokens = useLoad(() => api<TokenInfo[]>('GET', tenantPath(tenant.id, '/tokens')), [tenant.id]);
  const [clientId, setClientId] = useState('');
  const [pub, setPub] = useState('');
  const [sub, setSub] = useState('');
  const [ttl, setTtl] = useState('3600');
  const [minted, setMinted] = useState<Minted | undefined>();
  const mint = useAction();
  const revoke = useAction();
  const field = mint.error && fieldOf(mint.error.message, FIELDS);
  const fieldError = (name: string) => (field === name ? mint.error?.message : undefined);
  const onMint = async (e: Event) => {
    e.preventDefault();
    const body = mintBody({ clientId, pub, sub, ttlSeconds: Number(ttl) });
    const token = await mint.run(() => api<Minted>('POST', tenantPath(tenant.id, '/tokens'), body));
    if (token) {
      setMinted(token);
      tokens.reload();
    }
  };
  const onRevoke = async (jti: string) => {
    await revoke.run(() => api('DELETE', tenantPath(tenant.id, `/tokens/${encodeURIComponent(jti)}`)));
    tokens.reload();
  };
  return (
    <>
      <h2>Mint a token</h2>
      <p class="lead">
        A token is a device's or a browser's MQTT password. Leave the filters empty for the whole namespace of this
        tenant.
      </p>
      <form onSubmit={onMint} noValidate class="stacked-form">
        <Field
          label="Client id (optional)"
          name="client_id"
          value={clientId}
          placeholder="e.g. sensor-42"
          hint="The token then connects this client id only."
          error={fieldError('client_id')}
          onValue={setClientId}
        />
        <div class="two-columns">
          <Field
            label="May publish to"
            name="pub"
            multiline
            value={pub}
            placeholder={'sensors/${client_id}/#'}
            hint="One topic filter per line."
            error={fieldError('pub')}
            onValue={setPub}
          />
          <Field
            label="May subscribe to"
            name="sub"
            multiline
            value={sub}
            placeholder={'commands/${client_id}'}
            hint="One topic filter per line."
            error={fieldError('sub')}
            onValue={setSub}
          />
        </div>
        <Select label="Lifetime" name="ttl" value={ttl} options={TTLS} onChange={setTtl} />
        {!field && <ErrorNote error={mint.error} />}
        <button type="submit" class="button-primary" disabled={mint.busy}>
          {mint.busy ? 'Minting…' : 'Mint token'}
        </button>
      </form>
      {minted && (
        <div class="secret" role="status">
          <p>
            <strong>Copy the token now.</strong> It is not stored and is not shown again. It expires{' '}
            {relative(minted.expires_at)} (id <code data-testid="minted-jti">{minted.jti}</code>).
          </p>
          <Copyable value={minted.token} testId="minted-token" />
        </div>
      )}
      <h2>Tokens</h2>
      <DataTable
        what="tokens"
        loaded={tokens}
        error={revoke.error}
        testId="tokens-table"
        empty="No tokens minted yet."
        columns={['Id', 'Subject', 'Issued', 'Expires']}
        rowKey={(t) => t.jti}
        cells={(t) => [
          <code>{t.jti}</code>,
          t.subject,
          dateTime(t.issued_at),
          <span title={t.expires_at}>{relative(t.expires_at)}</span>,
        ]}
        action={(t) =>
          t.revoked ? (
            <span class="status status-revoked">revoked</span>
          ) : Date.parse(t.expires_at) <= Date.now() ? (
            <span class="status">expired</span>
          ) : (
            <ConfirmButton
              small
              label="Revoke"
              ariaLabel={`Revoke token ${t.jti}`}
              title="Revoke this token?"
              confirmLabel="Revoke"
              onConfirm={() => onRevoke(t.jti)}
            >
              <p>
                Devices connected with token <code>{t.jti}</code> are disconnected within a second, and it cannot
                connect again.
              </p>
            </ConfirmButton>
          )
        }
      />
    </>
  );
}
