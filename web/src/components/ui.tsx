// The console's building blocks: labelled fields, messages, copy buttons,
// loading and empty states, a confirmation dialog.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError } from '../lib/api';

let nextId = 0;
function useId(prefix: string): string {
  const id = useRef<string | undefined>(undefined);
  if (!id.current) id.current = `${prefix}-${(nextId += 1)}`;
  return id.current;
}

interface FieldProps {
  label: string;
  name: string;
  value: string;
  onValue: (value: string) => void;
  type?: 'text' | 'email' | 'password';
  placeholder?: string;
  hint?: string;
  error?: string;
  multiline?: boolean;
  rows?: number;
  autoComplete?: string;
  required?: boolean;
  disabled?: boolean;
}

/** A labelled input with its hint and its error, wired for screen readers. */
export function Field(props: FieldProps) {
  const { label, hint, error, multiline, rows, onValue, ...input } = props;
  const id = useId('field');
  const describedBy = [hint && `${id}-hint`, error && `${id}-error`].filter(Boolean).join(' ') || undefined;
  const common = {
    ...input,
    id,
    'aria-invalid': error ? ('true' as const) : undefined,
    'aria-describedby': describedBy,
    onInput: (e: Event) => onValue((e.currentTarget as HTMLInputElement | HTMLTextAreaElement).value),
  };
  return (
    <div class={`field${error ? ' field-invalid' : ''}`}>
      <label for={id}>{label}</label>
      {multiline ? <textarea {...common} rows={rows ?? 3} /> : <input {...common} />}
      {hint && (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {error && (
        <p class="error-text" id={`${id}-error`} role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

export function Select<T extends string>(props: {
  label: string;
  value: T;
  options: [T, string][];
  onChange: (value: T) => void;
  name?: string;
}) {
  const id = useId('select');
  return (
    <div class="field">
      <label for={id}>{props.label}</label>
      <select id={id} name={props.name} value={props.value} onChange={(e: Event) => props.onChange((e.currentTarget as HTMLSelectElement).value as T)}>
        {props.options.map(([value, text]) => (
          <option key={value} value={value}>
            {text}
          </option>
        ))}
      </select>
    </div>
  );
}

/** A labelled checkbox. */
export function Checkbox(props: { label: string; checked: boolean; onChange: (checked: boolean) => void }) {
  return (
    <label>
      <input
        type="checkbox"
        checked={props.checked}
        onChange={(e: Event) => props.onChange((e.currentTarget as HTMLInputElement).checked)}
      />{' '}
      {props.label}
    </label>
  );
}

/** An error about an action (not a field): announced to screen readers. */
export function ErrorNote({ error }: { error?: ApiError | string }) {
  if (!error) return null;
  return (
    <p class="notice notice-error" role="alert">
      {typeof error === 'string' ? error : error.message}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="loading" role="status" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="empty">{children}</div>;
}

/** Copies `value` to the clipboard and says so. */
export function CopyButton({ value, label = 'Copy' }: { value: string; label?: string }) {
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  useEffect(() => {
    if (state === 'idle') return;
    const t = setTimeout(() => setState('idle'), 2000);
    return () => clearTimeout(t);
  }, [state]);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
      setState('copied');
    } catch {
      setState('failed');
    }
  };
  return (
    <button type="button" class="button-small" onClick={copy} aria-live="polite">
      {state === 'copied' ? 'Copied' : state === 'failed' ? 'Copy failed: select and copy' : label}
    </button>
  );
}

/** A value in monospace with a copy button beside it. */
export function Copyable({ value, label, testId }: { value: string; label?: string; testId?: string }) {
  return (
    <div class="copyable">
      <code data-testid={testId}>{value}</code>
      <CopyButton value={value} label={label} />
    </div>
  );
}

/**
 * A modal confirmation (the native <dialog>: focus is trapped, Escape
 * cancels). With `typeToConfirm`, the button stays disabled until that text
 * is typed.
 */
export function Confirm(props: {
  title: string;
  children: ComponentChildren;
  confirmLabel: string;
  typeToConfirm?: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [typed, setTyped] = useState('');
  useEffect(() => {
    dialog.current?.showModal();
  }, []);
  const ready = !props.typeToConfirm || typed === props.typeToConfirm;
  return (
    <dialog ref={dialog} class="confirm" onCancel={props.onCancel} aria-labelledby="confirm-title">
      <form
        method="dialog"
        onSubmit={(e) => {
          e.preventDefault();
          if (ready) props.onConfirm();
        }}
      >
        <h2 id="confirm-title">{props.title}</h2>
        {props.children}
        {props.typeToConfirm && (
          <Field
            label={`Type “${props.typeToConfirm}” to confirm`}
            name="confirm"
            value={typed}
            autoComplete="off"
            onValue={setTyped}
          />
        )}
        <div class="actions">
          <button type="button" onClick={props.onCancel}>
            Cancel
          </button>
          <button type="submit" class="button-danger" disabled={!ready}>
            {props.confirmLabel}
          </button>
        </div>
      </form>
    </dialog>
  );
}
