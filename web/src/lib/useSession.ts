import { useEffect, useState } from 'preact/hooks';
import { onSession, session, type Session } from './session';

export function useSession(): Session | null {
  const [current, setCurrent] = useState(session());
  useEffect(() => onSession(setCurrent), []);
  return current;
}
