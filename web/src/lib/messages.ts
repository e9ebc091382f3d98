// The live client's message log: what arrived, shown the way a person reads it.

export interface LoggedMessage {
  id: number;
  at: Date;
  direction: 'in' | 'out';
  topic: string;
  qos: 0 | 1 | 2;
  retain: boolean;
  body: RenderedPayload;
}

export interface RenderedPayload {
  kind: 'json' | 'text' | 'binary' | 'empty';
  text: string;
  size: number;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** JSON pretty-printed, UTF-8 as text, anything else as hex (first 256 bytes). */
export function renderPayload(payload: Uint8Array): RenderedPayload {
  const size = payload.byteLength;
  if (size === 0) return { kind: 'empty', text: '(empty)', size };
  let text: string;
  try {
    text = decoder.decode(payload);
  } catch {
    const shown = Array.from(payload.subarray(0, 256), (b) => b.toString(16).padStart(2, '0')).join(' ');
    return { kind: 'binary', text: size > 256 ? `${shown} …` : shown, size };
  }
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return { kind: 'json', text: JSON.stringify(JSON.parse(trimmed), null, 2), size };
    } catch {
      // Looks like JSON but is not: show it as it came.
    }
  }
  return { kind: 'text', text, size };
}

/** What to send for the publish form's body: JSON is checked and compacted. */
export function encodePayload(text: string, format: 'json' | 'text'): { payload?: string; error?: string } {
  if (format === 'text') return { payload: text };
  try {
    return { payload: JSON.stringify(JSON.parse(text)) };
  } catch (e) {
    return { error: `Not valid JSON: ${(e as Error).message}` };
  }
}

/** The log keeps the newest `limit` messages, newest first. */
export function appendToLog(log: LoggedMessage[], message: LoggedMessage, limit = 500): LoggedMessage[] {
  const next = [message, ...log];
  return next.length > limit ? next.slice(0, limit) : next;
}
