// A list of API keys at one REST path (a tenant's, or the account's): create
// one (its secret shown once, with a copy button), list, revoke or delete.

import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { api, fieldOf } from '../lib/api';
import { dateTime } from '../lib/format';
import { useAction, useLoad } from '../lib/hooks';
import type { ApiKey } from '../lib/types';
import { Copyable, ErrorNote, Field } from './ui';
import { ConfirmButton, DataTable } from './DataTable';

export function KeyManager(props: {
  /** The collection: `GET` lists, `POST {name}` creates, `DELETE /{id}` removes. */
  path: string;
  placeholder: string;
  /** "Revoke" or "Delete". */
  removeLabel: string;
  /** What removing a key does, in the confirmation. */
  removed: ComponentChildren;
  /** Shown under a new key: how to use it. */
  usage?: (key: string) => ComponentChildren;
  testId: string;
}) {
  const { path } = props;
  const keys = useLoad(() => api<ApiKey[]>('GET', path), [path]);
  const [name, setName] = useState('');
  const [created, setCreated] = useState<ApiKey | undefined>();
  const create = useAction();
  const remove = useAction();
  const field = create.error && fieldOf(create.error.message, ['name']);
  const onCreate = async (e: Event) => {
    e.preventDefault();
    const key = await create.run(() => api<ApiKey>('POST', path, { name }));
    if (key) {
      setCreated(key);
      setName('');
      keys.reload();
    }
  };
  const onRemove = async (key: ApiKey) => {
    await remove.run(() => api('DELETE', `${path}/${encodeURIComponent(key.id)}`));
    keys.reload();
  };
  return (
    <>
      <form class="inline-form" onSubmit={onCreate} noValidate>
        <Field
          label="Key name"
          name="name"
          value={name}
          placeholder={props.placeholder}
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
          <Copyable value={created.key} testId={`new-${props.testId}`} />
          {props.usage?.(created.key)}
          <button type="button" class="button-small" onClick={() => setCreated(undefined)}>
            I have copied it
          </button>
        </div>
      )}
      <DataTable
        what="API keys"
        loaded={keys}
        error={remove.error}
        testId={`${props.testId}s-table`}
        empty="No API keys yet."
        columns={['Name', 'Id', 'Created']}
        rowKey={(k) => k.id}
        cells={(k) => [k.name, <code>{k.id}</code>, dateTime(k.created_at)]}
        action={(k) => (
          <ConfirmButton
            small
            label={props.removeLabel}
            ariaLabel={`${props.removeLabel} API key ${k.name}`}
            title={`${props.removeLabel} the API key “${k.name}”?`}
            confirmLabel={props.removeLabel}
            onConfirm={() => onRemove(k)}
          >
            {props.removed}
          </ConfirmButton>
        )}
      />
    </>
  );
}
