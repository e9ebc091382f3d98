// The one way the console talks to the control plane: same origin, JSON,
// the session in its HttpOnly cookie (the browser sends it; the page never
// sees it) with the session's CSRF token on every state-changing request,
// problem+json errors turned into ApiError.

import type { Problem } from './types';
import { session, setSession } from './session';

export class ApiError extends Error {
  readonly status: number;
  readonly type: string;

  constructor(status: number, type: string, detail: string) {
    super(detail);
    this.status = status;
    this.type = type;
  }
}

/** Turns a non-2xx answer into an ApiError with a sentence a person can read. */
export async function problemOf(response: Response): Promise<ApiError> {
  let problem: Partial<Problem> = {};
  try {
    problem = (await response.json()) as Partial<Problem>;
  } catch {
    // Not JSON (a proxy's error page): fall back to the status line.
  }
  const detail =
    typeof problem.detail === 'string' && problem.detail
      ? sentence(problem.detail)
      : `${response.status} ${problem.title ?? response.statusText}`.trim();
  return new ApiError(response.status, problem.type ?? 'about:blank', detail);
}

/**
 * "email is not a valid address" -> "Email is not a valid address.". A
 * leading field name such as `public_key_pem` keeps its spelling.
 */
export function sentence(detail: string): string {
  const text = detail.trim();
  if (!text) return text;
  const identifier = /^[a-z]+_[a-z_]*\b/.test(text);
  const first = identifier ? text : text[0].toUpperCase() + text.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/**
 * Which of a form's fields a problem's detail is about: the API's details
 * start with the field's name ("password must have…") or quote it in
 * backticks ("`pub` filter … is not valid"). Undefined: about the action.
 */
export function fieldOf(detail: string, fields: readonly string[]): string | undefined {
  const quoted = /`([a-z_]+)`/i.exec(detail)?.[1];
  if (quoted && fields.includes(quoted)) return quoted;
  const first = /^([a-z_]+)/i.exec(detail.trim())?.[1]?.toLowerCase();
  return first && fields.includes(first) ? first : undefined;
}

/** The header that carries the session's CSRF token. */
export const CSRF_HEADER = 'X-Aerie-CSRF';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  const signedIn = session();
  if (signedIn && !SAFE_METHODS.has(method.toUpperCase())) headers[CSRF_HEADER] = signedIn.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // The session cookie goes to the control plane only (same origin).
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'The control plane cannot be reached. Check your connection and try again.');
  }
  if (response.status === 401 && signedIn) {
    // The session expired or ended (logged out elsewhere).
    setSession(null);
  }
  if (!response.ok) throw await problemOf(response);
  if (response.status === 204) return undefined as T;
  return (await response.json()) as T;
}

export const tenantPath = (tid: string, rest = '') => `/v1/tenants/${encodeURIComponent(tid)}${rest}`;
