// The shell: header, routes, and the rule that every page but sign-up and
// log-in needs a session (without one, the log-in form shows in place and the
// page appears once logged in). On load the page first asks whether its
// session cookie still signs it in, so a reload keeps the person signed in.

import { LocationProvider, Route, Router, useLocation } from 'preact-iso';
import type { ComponentType } from 'preact';
import { useEffect } from 'preact/hooks';
import { logOut, restoreSession } from './lib/account';
import { useAction } from './lib/hooks';
import { useSession, useSessionKnown } from './lib/useSession';
import { ErrorNote, Loading } from './components/ui';
import { LogIn, SignUp } from './pages/Auth';
import { Tenants } from './pages/Tenants';
import { TenantPage } from './pages/TenantPage';
import { AccountKeys } from './pages/AccountKeys';

function Header() {
  const current = useSession();
  const known = useSessionKnown();
  const { route } = useLocation();
  const { busy, error, run } = useAction();
  return (
    <header class="top">
      <a href="/" class="brand">
        Aerie
      </a>
      <nav aria-label="Account">
        {current ? (
          <>
            <a href="/tenants">Tenants</a>
            <a href="/account/api-keys">Account keys</a>
            <span class="who" data-testid="account-email">
              {current.email}
            </span>
            <button
              type="button"
              class="button-small"
              disabled={busy}
              onClick={async () => {
                if (await run(async () => (await logOut(), true))) route('/login');
              }}
            >
              {busy ? 'Logging out…' : 'Log out'}
            </button>
            <ErrorNote error={error} />
          </>
        ) : !known ? null : (
          <>
            <a href="/login">Log in</a>
            <a href="/signup">Sign up</a>
          </>
        )}
      </nav>
    </header>
  );
}

function needsSession<P>(Page: ComponentType<P>): ComponentType<P> {
  return (props: P) => {
    const current = useSession();
    const known = useSessionKnown();
    if (!known) return <Loading what="your session" />;
    if (!current) return <LogIn note="Log in to continue." stay />;
    return <Page {...(props as P & object)} />;
  };
}

const TenantsPage = needsSession(Tenants);
const Tenant = needsSession(TenantPage);
const AccountKeysPage = needsSession(AccountKeys);

function Home() {
  const current = useSession();
  const known = useSessionKnown();
  if (!known) return <Loading what="your session" />;
  return current ? <Tenants /> : <SignUp />;
}

function NotFound() {
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        There is nothing at this address. <a href="/">Back to the start</a>.
      </p>
    </section>
  );
}

export function App() {
  const known = useSessionKnown();
  useEffect(() => {
    // A failure other than "not signed in" leaves the page signed out; the
    // log-in form then says what went wrong on the next attempt.
    if (!known) restoreSession().catch(() => undefined);
  }, []);
  return (
    <LocationProvider>
      <Header />
      <main id="main">
        <Router>
          <Route path="/" component={Home} />
          <Route path="/signup" component={SignUp} />
          <Route path="/login" component={LogIn} />
          <Route path="/tenants" component={TenantsPage} />
          <Route path="/tenants/:tid/:tab?" component={Tenant} />
          <Route path="/account/api-keys" component={AccountKeysPage} />
          <Route default component={NotFound} />
        </Router>
      </main>
    </LocationProvider>
  );
}
