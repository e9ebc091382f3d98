// MQTT topic rules (MQTT 5.0 §4.7), for the live client's checks and its log filter.

/** Whether `topic` (a topic name) matches `filter` (with `+` and `#`). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  // `#` and `+` at the first level do not match topics starting with `$` (§4.7.2).
  if (topic.startsWith('$') && (f[0] === '#' || f[0] === '+')) return false;
  for (let i = 0; i < f.length; i += 1) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** Why `filter` is not a valid topic filter, or undefined when it is. */
export function filterProblem(filter: string): string | undefined {
  if (!filter) return 'A topic filter cannot be empty.';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i += 1) {
    const level = levels[i];
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) {
      return '`#` must be a whole level and the last one.';
    }
    if (level.includes('+') && level !== '+') return '`+` must be a whole level.';
  }
  return undefined;
}

/** Why `topic` cannot be published to, or undefined when it can. */
export function topicProblem(topic: string): string | undefined {
  if (!topic) return 'A topic cannot be empty.';
  if (/[+#]/.test(topic)) return 'A topic to publish to cannot contain `+` or `#`.';
  if (topic.startsWith('$')) return 'Topics starting with `$` belong to the broker.';
  return undefined;
}
