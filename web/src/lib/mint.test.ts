import { describe, expect, it } from 'vitest';
import { filterList, mintBody } from './mint';

describe('mintBody', () => {
  it('sends no ACL when no filter is given', () => {
    expect(mintBody({ clientId: '', pub: '', sub: ' \n ', ttlSeconds: 3600 })).toEqual({ ttl_seconds: 3600 });
  });
  it('sends both lists as soon as one has a filter', () => {
    expect(mintBody({ clientId: ' dev-1 ', pub: 'sensors/${client_id}/#', sub: '', ttlSeconds: 600 })).toEqual({
      client_id: 'dev-1',
      pub: ['sensors/${client_id}/#'],
      sub: [],
      ttl_seconds: 600,
    });
  });
  it('reads one filter per line or comma', () => {
    expect(filterList('a/#\n b/+ ,c\n\n')).toEqual(['a/#', 'b/+', 'c']);
  });
});
