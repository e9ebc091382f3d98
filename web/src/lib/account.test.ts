import { afterEach, describe, expect, it, vi } from 'vitest';
import { logOut, restoreSession, signIn } from './account';
import { session, sessionKnown, setSession } from './session';

function json(status: number, body: unknown) {
  return new Response(JSON.stringify(body), {
    status,
    headers: { 'Content-Type': status < 300 ? 'application/json' : 'application/problem+json' },
  });
}

const unauthorized = () => json(401, { type: 'urn:aerie:problem:unauthorized', title: 'Unauthorized', status: 401, detail: 'no' });

describe('the session across a reload', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    setSession(null);
  });

  it('is restored from the cookie: GET /v1/account gives the email and the CSRF token', async () => {
    const fetch = vi.fn(async () =>
      json(200, { id: 'a1', email: 'ada@example.com', session: { csrf_token: 'csrf-9', expires_at: 'x' } }),
    );
    vi.stubGlobal('fetch', fetch);
    await restoreSession();
    expect(session()).toEqual({ email: 'ada@example.com', csrf: 'csrf-9' });
    expect(sessionKnown()).toBe(true);
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect([url, init.method, init.credentials]).toEqual(['/v1/account', 'GET', 'same-origin']);
  });

  it('is known to be signed out when the cookie is missing, expired or ended (401)', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => unauthorized()));
    await restoreSession();
    expect(session()).toBeNull();
    expect(sessionKnown()).toBe(true);
  });

  it('keeps the CSRF token of the sign-in answer, not the token', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => json(200, { token: 's2.secret', csrf_token: 'csrf-1', expires_at: 'x' })));
    await signIn('/v1/sessions', 'ada@example.com', 'correct horse battery');
    expect(session()).toEqual({ email: 'ada@example.com', csrf: 'csrf-1' });
    expect(JSON.stringify(session())).not.toContain('s2.secret');
  });

  it('logs out on the server, with the CSRF header, then here', async () => {
    const fetch = vi.fn(async () => new Response(null, { status: 204 }));
    vi.stubGlobal('fetch', fetch);
    setSession({ email: 'ada@example.com', csrf: 'csrf-1' });
    await logOut();
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect([url, init.method]).toEqual(['/v1/sessions/current', 'DELETE']);
    expect((init.headers as Record<string, string>)['X-Aerie-CSRF']).toBe('csrf-1');
    expect(session()).toBeNull();
  });

  it('stays signed in when the log-out did not reach the server', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    setSession({ email: 'ada@example.com', csrf: 'csrf-1' });
    await expect(logOut()).rejects.toMatchObject({ status: 0 });
    expect(session()).toEqual({ email: 'ada@example.com', csrf: 'csrf-1' });
  });
});
