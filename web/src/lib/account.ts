// Signing in and out, and finding out on load whether the session cookie
// still signs this browser in (so a reload keeps the person signed in).

import { api, ApiError } from './api';
import { setSession } from './session';

/** What sign-up and log-in answer (the token is for scripts; the page uses the cookie). */
export interface SignedIn {
  csrf_token: string;
  expires_at: string;
}

/** What GET /v1/account answers to a session. */
export interface AccountInfo {
  id: string;
  email: string;
  session?: { csrf_token: string; expires_at: string };
}

/** Signs in through `path` (`/v1/accounts` or `/v1/sessions`); the answer sets the cookie. */
export async function signIn(path: '/v1/accounts' | '/v1/sessions', email: string, password: string): Promise<void> {
  const answer = await api<SignedIn>('POST', path, { email, password });
  setSession({ email, csrf: answer.csrf_token });
}

/**
 * Asks the control plane who the cookie signs in as. A 401 means nobody (no
 * cookie, or its session expired or ended); anything else that fails leaves
 * the page signed out too, with the error for whoever wants to show it.
 */
export async function restoreSession(): Promise<void> {
  try {
    const me = await api<AccountInfo>('GET', '/v1/account');
    setSession(me.session ? { email: me.email, csrf: me.session.csrf_token } : null);
  } catch (e) {
    setSession(null);
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
  }
}

/** Ends the session on the server (its cookie and token stop working), then here. */
export async function logOut(): Promise<void> {
  try {
    await api('DELETE', '/v1/sessions/current');
  } catch (e) {
    // Already ended (401): signed out all the same. Anything else: the
    // session may live on, so the page stays signed in and says why.
    if (!(e instanceof ApiError) || e.status !== 401) throw e;
  }
  setSession(null);
}
