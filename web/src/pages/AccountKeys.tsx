// Account API keys: for machines that act as the whole account (Terraform, a
// deployment pipeline). A key is shown once, when it is created; only a
// logged-in person manages them, never a key.

import { accountKeyUsage } from '../lib/snippets';
import { KeyManager } from '../components/KeyManager';

export function AccountKeys() {
  return (
    <section>
      <h1>Account API keys</h1>
      <p class="lead">
        An account API key lets a machine do what you can do here, on every tenant of this account: create, rename
        and delete tenants, and everything inside them. It cannot create or delete account API keys.
      </p>
      <KeyManager
        path="/v1/account/api-keys"
        placeholder="e.g. terraform"
        removeLabel="Delete"
        removed={<p>Machines using this key get 401 from now on. What they made stays in the account.</p>}
        usage={(key) => (
          <>
            <p>Use it from a shell (the Terraform provider reads the same variables):</p>
            <pre data-testid="account-key-usage">{accountKeyUsage(location.origin, key)}</pre>
          </>
        )}
        testId="account-key"
      />
    </section>
  );
}
