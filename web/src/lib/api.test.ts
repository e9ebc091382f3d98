import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiError, api, fieldOf, problemOf, sentence } from './api';
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

  it('sends the session token as a bearer header and never in the URL', async () => {
    const fetch = vi.fn(async () => new Response('[]', { status: 200 }));
    vi.stubGlobal('fetch', fetch);
    setSession({ token: 'secret-token', email: 'a@b.c' });
    await api('GET', '/v1/tenants');
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe('/v1/tenants');
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer secret-token');
    expect(init.credentials).toBe('omit');
  });

  it('ends the session on 401', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => problem(401, 'session expired')));
    setSession({ token: 't', email: 'a@b.c' });
    await expect(api('GET', '/v1/tenants')).rejects.toBeInstanceOf(ApiError);
    expect(session()).toBeNull();
  });

  it('turns a network failure into an ApiError', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(api('GET', '/v1/tenants')).rejects.toMatchObject({ status: 0 });
  });
});
