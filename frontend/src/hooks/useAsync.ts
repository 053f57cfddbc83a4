/**
 * Loads data for a page and tracks loading / error / data, with a retry and cancellation when the page goes away.
 * Small on purpose: the app has a handful of GETs, each owned by one page.
 */
import { useCallback, useEffect, useState } from "react";
import { ApiError, errorMessage } from "../api/errors";

export type AsyncState<T> =
  | { status: "loading"; data: T | null; error: null }
  | { status: "ready"; data: T; error: null }
  | { status: "error"; data: T | null; error: string; httpStatus: number | null };

export function useAsync<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: readonly unknown[],
): AsyncState<T> & { reload: () => void; setData: (data: T) => void } {
  const [state, setState] = useState<AsyncState<T>>({ status: "loading", data: null, error: null });
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    const controller = new AbortController();
    setState((previous) => ({ status: "loading", data: previous.data, error: null }));
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ status: "ready", data, error: null });
      },
      (error: unknown) => {
        if (!controller.signal.aborted) setState((previous) => ({
            status: "error",
            data: previous.data,
            error: errorMessage(error),
            httpStatus: error instanceof ApiError ? error.status : null,
          }));
      },
    );
    return () => controller.abort();
    // `load` is a new function on every render; the caller lists what it depends on in `deps`.
  }, [...deps, generation]);

  const reload = useCallback(() => setGeneration((value) => value + 1), []);
  const setData = useCallback((data: T) => setState({ status: "ready", data, error: null }), []);
  return { ...state, reload, setData };
}
