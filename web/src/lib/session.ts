// The account session lives in memory only: never in a URL, a cookie or
// Web Storage, so a script injected into another page cannot read it, and
// nothing is sent without the console adding it itself (no CSRF surface).
// A reload of the page ends the session; that is the price.

export interface Session {
  token: string;
  email: string;
}

type Listener = (session: Session | null) => void;

let current: Session | null = null;
const listeners = new Set<Listener>();

export function session(): Session | null {
  return current;
}

export function setSession(next: Session | null): void {
  current = next;
  for (const listener of listeners) listener(current);
}

export function onSession(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
