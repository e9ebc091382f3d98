import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, CSRF_HEADER, api, fieldOf, problemOf, sentence } from './api';
import { session, setSession } from './session';

function problem(status: number, detail: string) {
  return new Response(JSON.stringify({ type: 'urn:aerie:problem:x', title: 'T', status, detail }), {
    status,
    headers: { 'Content-Type': 'application/problem+json' },
  });
}

describe('problem+json', () => {
  it('becomes a readable sentence', async () => {
    const err = await problemOf(problem(422, 'password must have at least 8 characters'));
    expect(err.message).toBe('Password must have at least 8 characters.');
    expect(err.status).toBe(422);
    expect(err.type).toBe('urn:aerie:problem:x');
  });

  it('falls back to the status line when the body is not JSON', async () => {
    const err = await problemOf(new Response('<html>bad gateway</html>', { status: 502, statusText: 'Bad Gateway' }));
    expect(err.message).toBe('502 Bad Gateway');
  });

  it('keeps the spelling of a leading field name', () => {
    expect(sentence('public_key_pem is not a PEM document')).toBe('public_key_pem is not a PEM document.');
  });

  it('keeps a sentence that already ends', () => {
    expect(sentence('wrong email or password!')).toBe('Wrong email or password!');
  });
});

describe('fieldOf', () => {
  const fields = ['email', 'password', 'pub', 'sub', 'client_id'];
  it('finds the field a detail starts with', () => {
    expect(fieldOf('Email is not a valid address.', fields)).toBe('email');
  });
  it('finds a field in backticks', () => {
    expect(fieldOf('`sub` filter "a/#/b" is not valid', fields)).toBe('sub');
  });
  it('leaves details about the action alone', () => {
    expect(fieldOf('Wrong email or password.', fields)).toBeUndefined();
    expect(fieldOf('tenant not found', fields)).toBeUndefined();
  });
});

describe('api()', () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    setSession(null);
  });

  it('sends the session by its cookie only: no token in a header or the URL', async () => {
    const fetch = vi.fn(async () => new Response('[]', { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    setSession({ email: 'a@b.c', csrf: 'csrf-1' });
    await api('GET', '/v1/tenants');
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/v1/tenants');
    const headers = init.headers as Record<string, string>;
    expect(headers.Authorization).toBeUndefined();
    // A read needs no CSRF token.
    expect(headers[CSRF_HEADER]).toBeUndefined();
    expect(init.credentials).toBe('same-origin');
  });

  it('puts the CSRF token on every state-changing request', async () => {
    const fetch = vi.fn(async () => new Response(null, { status: 204 }));
    vi.stubGlobal('fetch', fetch);
    setSession({ email: 'a@b.c', csrf: 'csrf-1' });
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE']) await api(method, '/v1/tenants/x');
    for (const call of fetch.mock.calls as unknown as [string, RequestInit][]) {
      expect((call[1].headers as Record<string, string>)[CSRF_HEADER]).toBe('csrf-1');
    }
    setSession(null);
    await api('POST', '/v1/sessions', {});
    const last = fetch.mock.calls.at(-1) as unknown as [string, RequestInit];
    expect((last[1].headers as Record<string, string>)[CSRF_HEADER]).toBeUndefined();
  });

  it('ends the session on 401', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => problem(401, 'session expired')));
    setSession({ email: 'a@b.c', csrf: 'c' });
    await expect(api('GET', '/v1/tenants')).rejects.toBeInstanceOf(ApiError);
    expect(session()).toBeNull();
  });

  it('turns a network failure into an ApiError', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(api('GET', '/v1/tenants')).rejects.toMatchObject({ status: 0 });
  });
});
