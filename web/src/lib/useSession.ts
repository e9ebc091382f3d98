import { useEffect, useState } from 'preact/hooks';
import { onSession, session, sessionKnown, type Session } from './session';

export function useSession(): Session | null {
  const [current, setCurrent] = useState(session());
  useEffect(() => {
    setCurrent(session());
    return onSession(setCurrent);
  }, []);
  return current;
}

/** Whether the page knows yet if it is signed in (`restoreSession` answered). */
export function useSessionKnown(): boolean {
  const [known, setKnown] = useState(sessionKnown());
  useEffect(() => {
    setKnown(sessionKnown());
    return onSession(() => setKnown(sessionKnown()));
  }, []);
  return known;
}
