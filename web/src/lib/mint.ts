// The body of POST /v1/tenants/{tid}/tokens from the mint form's fields.

export interface MintForm {
  clientId: string;
  pub: string;
  sub: string;
  ttlSeconds: number;
}

export interface MintBody {
  client_id?: string;
  pub?: string[];
  sub?: string[];
  ttl_seconds: number;
}

/** One filter per line (or comma-separated); blanks dropped. */
export function filterList(text: string): string[] {
  return text
    .split(/[\n,]/)
    .map((f) => f.trim())
    .filter((f) => f.length > 0);
}

/**
 * No filters at all: the token covers the whole tenant namespace. Filters in
 * one list only: the other list is empty, so that direction is refused.
 */
export function mintBody(form: MintForm): MintBody {
  const body: MintBody = { ttl_seconds: form.ttlSeconds };
  const clientId = form.clientId.trim();
  if (clientId) body.client_id = clientId;
  const pub = filterList(form.pub);
  const sub = filterList(form.sub);
  if (pub.length > 0 || sub.length > 0) {
    body.pub = pub;
    body.sub = sub;
  }
  return body;
}
