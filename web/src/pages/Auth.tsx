// Sign up and log in: email and password, errors next to the field they are about.

import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { fieldOf } from '../lib/api';
import { signIn } from '../lib/account';
import { useAction } from '../lib/hooks';
import { ErrorNote, Field } from '../components/ui';

const FIELDS = ['email', 'password'] as const;

function Credentials(props: {
  title: string;
  submitLabel: string;
  busyLabel: string;
  passwordAutocomplete: string;
  submit: (email: string, password: string) => Promise<void>;
  note?: string;
  stay?: boolean;
  footer: preact.ComponentChildren;
}) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const { busy, error, run } = useAction();
  const { route, path } = useLocation();
  const field = error && fieldOf(error.message, FIELDS);
  const onSubmit = async (e: Event) => {
    e.preventDefault();
    const done = await run(async () => (await props.submit(email.trim(), password), true));
    if (done) {
      // On a protected page the page itself appears; from the forms, the tenants.
      if (!props.stay || path === '/login' || path === '/signup') route('/tenants');
    }
  };
  return (
    <section class="auth">
      <h1>{props.title}</h1>
      {props.note && <p class="notice">{props.note}</p>}
      <form onSubmit={onSubmit} noValidate>
        <Field
          label="Email"
          name="email"
          type="email"
          autoComplete="email"
          required
          value={email}
          error={field === 'email' ? error?.message : undefined}
          onValue={setEmail}
        />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete={props.passwordAutocomplete}
          required
          value={password}
          hint={props.passwordAutocomplete === 'new-password' ? 'At least 10 characters.' : undefined}
          error={field === 'password' ? error?.message : undefined}
          onValue={setPassword}
        />
        {!field && <ErrorNote error={error} />}
        <button type="submit" class="button-primary" disabled={busy}>
          {busy ? props.busyLabel : props.submitLabel}
        </button>
      </form>
      <p class="aside">{props.footer}</p>
    </section>
  );
}

export function SignUp() {
  return (
    <Credentials
      title="Create your Aerie account"
      submitLabel="Sign up"
      busyLabel="Signing up…"
      passwordAutocomplete="new-password"
      submit={(email, password) => signIn('/v1/accounts', email, password)}
      footer={
        <>
          Already have an account? <a href="/login">Log in</a>
        </>
      }
    />
  );
}

export function LogIn({ note, stay }: { note?: string; stay?: boolean }) {
  return (
    <Credentials
      title="Log in to Aerie"
      submitLabel="Log in"
      busyLabel="Logging in…"
      passwordAutocomplete="current-password"
      note={note}
      stay={stay}
      submit={(email, password) => signIn('/v1/sessions', email, password)}
      footer={
        <>
          New here? <a href="/signup">Create an account</a>
        </>
      }
    />
  );
}
