// Who is signed in. The session token itself lives in an HttpOnly,
// SameSite=Strict cookie that the control plane sets at sign-in: no script
// (ours or an injected one) can read it, another site's page cannot make the
// browser send it, and a reload keeps the person signed in. What the page
// keeps, in memory only, is the email it shows and the session's CSRF token,
// which every state-changing request must carry (X-Aerie-CSRF): a forged
// cross-site request cannot know it. Log-out ends the session on the server.

export interface Session {
  email: string;
  /** The session's CSRF token (from the sign-in answer or GET /v1/account). */
  csrf: string;
}

type Listener = (session: Session | null) => void;

let current: Session | null = null;
/** False until the page has asked the control plane whether a cookie signs it in. */
let known = false;
const listeners = new Set<Listener>();

export function session(): Session | null {
  return current;
}

/** Whether the page knows yet if it is signed in (see `restoreSession`). */
export function sessionKnown(): boolean {
  return known;
}

export function setSession(next: Session | null): void {
  current = next;
  known = true;
  for (const listener of listeners) listener(current);
}

export function onSession(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
