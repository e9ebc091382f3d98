// Which of a tenant's endpoints the console offers: the API names only the
// listeners the server really runs, so MQTTS and WSS are absent when the
// server has no TLS configured.

import type { Endpoints } from './types';

export type EndpointKey = keyof Endpoints;

export interface ShownEndpoint {
  key: EndpointKey;
  label: string;
  url: string;
}

const LABELS: [EndpointKey, string][] = [
  ['mqtt', 'MQTT over TCP'],
  ['mqtts', 'MQTT over TLS'],
  ['ws', 'MQTT over WebSocket'],
  ['wss', 'MQTT over secure WebSocket'],
];

/** The endpoints served, in a fixed order, with their labels. */
export function shownEndpoints(endpoints: Endpoints): ShownEndpoint[] {
  return LABELS.flatMap(([key, label]) => {
    const url = endpoints[key];
    return url ? [{ key, label, url }] : [];
  });
}

/** Whether the server serves TLS (MQTTS or WSS) to this tenant. */
export function servesTls(endpoints: Endpoints): boolean {
  return Boolean(endpoints.mqtts || endpoints.wss);
}

/** The WebSocket endpoints the live client may use; WSS first on an https page. */
export function websocketChoices(endpoints: Endpoints, securePage: boolean): ['ws' | 'wss', string][] {
  const choices: ['ws' | 'wss', string][] = [['ws', endpoints.ws]];
  if (endpoints.wss) choices[securePage ? 'unshift' : 'push'](['wss', endpoints.wss]);
  return choices;
}
