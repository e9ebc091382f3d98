// Small hooks the pages share: loading data, loading a code-split module.

import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

export interface Loaded<T> {
  data?: T;
  error?: ApiError;
  loading: boolean;
  reload: () => void;
}

/** Runs `load` now and whenever `deps` change or `reload()` is called. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({ loading: true });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ data, loading: false }),
      (error) => live && setState((s) => ({ data: s.data, error: asApiError(error), loading: false })),
    );
    return () => {
      live = false;
    };
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { ...state, reload };
}

export function asApiError(error: unknown): ApiError {
  return error instanceof ApiError ? error : new ApiError(0, 'client', (error as Error)?.message ?? String(error));
}

/**
 * Runs an action (a form submit, a button) with a busy flag and its error:
 * `run` resolves to the action's result, or undefined when it failed.
 */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | undefined>();
  const mounted = useRef(true);
  useEffect(
    () => () => {
      mounted.current = false;
    },
    [],
  );
  const run = useCallback(async <T,>(action: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(undefined);
    try {
      return await action();
    } catch (e) {
      if (mounted.current) setError(asApiError(e));
      return undefined;
    } finally {
      if (mounted.current) setBusy(false);
    }
  }, []);
  return { busy, error, setError, run };
}

/** Loads a code-split module once (MQTT.js, the charts) and re-renders when it is there. */
export function useModule<M>(load: () => Promise<M>): { module?: M; error?: Error } {
  const [state, setState] = useState<{ module?: M; error?: Error }>({});
  useEffect(() => {
    let live = true;
    load().then(
      (module) => live && setState({ module }),
      (error) => live && setState({ error }),
    );
    return () => {
      live = false;
    };
  }, []);
  return state;
}
