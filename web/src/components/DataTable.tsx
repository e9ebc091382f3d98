// A list the API returned, as a table: with its loading, error and empty
// states, and an optional action per row.

import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import type { ApiError } from '../lib/api';
import type { Loaded } from '../lib/hooks';
import { Confirm, Empty, ErrorNote, Loading } from './ui';

export function DataTable<T>(props: {
  /** "API keys": for "Loading API keys…". */
  what: string;
  loaded: Loaded<T[]>;
  /** An error of an action on the rows (a revoke), shown with the load's. */
  error?: ApiError;
  empty: ComponentChildren;
  columns: string[];
  rowKey: (item: T) => string;
  cells: (item: T) => ComponentChildren[];
  action?: (item: T) => ComponentChildren;
  testId?: string;
}) {
  const { loaded } = props;
  return (
    <>
      <ErrorNote error={loaded.error ?? props.error} />
      {loaded.loading && !loaded.data && <Loading what={props.what} />}
      {loaded.data && loaded.data.length === 0 && <Empty>{props.empty}</Empty>}
      {loaded.data && loaded.data.length > 0 && (
        <div class="table-wrap">
          <table data-testid={props.testId}>
            <thead>
              <tr>
                {props.columns.map((c) => (
                  <th key={c} scope="col">
                    {c}
                  </th>
                ))}
                {props.action && (
                  <th scope="col">
                    <span class="visually-hidden">Actions</span>
                  </th>
                )}
              </tr>
            </thead>
            <tbody>
              {loaded.data.map((item) => {
                const key = props.rowKey(item);
                return (
                  <tr key={key} data-key={key}>
                    {props.cells(item).map((cell, i) => (
                      <td key={i}>{cell}</td>
                    ))}
                    {props.action && <td>{props.action(item)}</td>}
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

/** A button that asks first, in a modal dialog. */
export function ConfirmButton(props: {
  label: string;
  /** What the button does, for screen readers, when `label` alone is ambiguous in a list. */
  ariaLabel?: string;
  title: string;
  confirmLabel: string;
  typeToConfirm?: string;
  small?: boolean;
  disabled?: boolean;
  onConfirm: () => void;
  children: ComponentChildren;
}) {
  const [asking, setAsking] = useState(false);
  return (
    <>
      <button
        type="button"
        class={`button-danger${props.small ? ' button-small' : ''}`}
        aria-label={props.ariaLabel}
        disabled={props.disabled}
        onClick={() => setAsking(true)}
      >
        {props.label}
      </button>
      {asking && (
        <Confirm
          title={props.title}
          confirmLabel={props.confirmLabel}
          typeToConfirm={props.typeToConfirm}
          onConfirm={() => {
            setAsking(false);
            props.onConfirm();
          }}
          onCancel={() => setAsking(false)}
        >
          {props.children}
        </Confirm>
      )}
    </>
  );
}
