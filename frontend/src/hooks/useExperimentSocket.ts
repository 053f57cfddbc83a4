/**
 * Follows one experiment over its WebSocket and keeps following it when the connection drops.
 *
 * Why the reconnect lives here and not in a library: the server sends a full snapshot on every connect, so the only
 * client-side work is to reconnect with backoff, show that it is doing so, and merge the snapshot (see liveState).
 * It stops for good when the experiment has ended or the server says the experiment does not exist (4404).
 */
import { useCallback, useEffect, useReducer, useRef, useState } from "react";
import { CLOSE_NOT_FOUND, experimentSocketUrl, parseServerMessage } from "../api/ws";
import { initialLiveState, liveReducer, type LiveState } from "../lib/liveState";

export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed" | "not_found";

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  factor: number;
}

export interface SocketOptions {
  /** Injected in tests; the browser's WebSocket otherwise. */
  WebSocketImpl?: typeof WebSocket;
  url?: string;
  backoff?: Partial<BackoffOptions>;
  /** 0..1; jitter spreads reconnects of many tabs after a server restart. Injected in tests for exact delays. */
  random?: () => number;
}

export interface ExperimentSocket {
  state: LiveState;
  connection: ConnectionState;
  /** Failed connection attempts since the last good one. */
  attempts: number;
  /** Milliseconds until the next attempt while reconnecting. */
  retryInMs: number | null;
  reconnectNow: () => void;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 10_000, factor: 2 };

/** Delay before attempt `attempt` (1-based): exponential, capped, with up to 50 % jitter taken off. */
export function backoffDelay(attempt: number, options: BackoffOptions, random: () => number = Math.random): number {
  const raw = Math.min(options.maxMs, options.initialMs * options.factor ** Math.max(0, attempt - 1));
  return Math.round(raw * (0.5 + 0.5 * random()));
}

export function useExperimentSocket(experimentId: string | undefined, options: SocketOptions = {}): ExperimentSocket {
  const [state, dispatch] = useReducer(liveReducer, initialLiveState);
  const [connection, setConnection] = useState<ConnectionState>("connecting");
  const [attempts, setAttempts] = useState(0);
  const [retryInMs, setRetryInMs] = useState<number | null>(null);

  const optionsRef = useRef(options);
  optionsRef.current = options;
  const socketRef = useRef<WebSocket | null>(null);
  const timerRef = useRef<ReturnType<typeof setTimeout> | null>(null);
  const attemptsRef = useRef(0);
  const doneRef = useRef(false);
  const connectRef = useRef<() => void>(() => undefined);

  const clearTimer = () => {
    if (timerRef.current !== null) {
      clearTimeout(timerRef.current);
      timerRef.current = null;
    }
  };

  useEffect(() => {
    if (!experimentId) return undefined;
    doneRef.current = false;
    attemptsRef.current = 0;
    let disposed = false;

    const scheduleReconnect = () => {
      attemptsRef.current += 1;
      setAttempts(attemptsRef.current);
      const backoff = { ...DEFAULT_BACKOFF, ...optionsRef.current.backoff };
      const delay = backoffDelay(attemptsRef.current, backoff, optionsRef.current.random);
      setConnection("reconnecting");
      setRetryInMs(delay);
      clearTimer();
      timerRef.current = setTimeout(() => {
        timerRef.current = null;
        connect();
      }, delay);
    };

    const connect = () => {
      if (disposed || doneRef.current) return;
      const Impl = optionsRef.current.WebSocketImpl ?? WebSocket;
      const url = optionsRef.current.url ?? experimentSocketUrl(experimentId);
      let socket: WebSocket;
      try {
        socket = new Impl(url);
      } catch {
        scheduleReconnect();
        return;
      }
      socketRef.current = socket;
      if (attemptsRef.current === 0) setConnection("connecting");
      socket.onopen = () => {
        if (disposed || socketRef.current !== socket) return;
        setConnection("open");
        setRetryInMs(null);
      };
      socket.onmessage = (event: MessageEvent) => {
        if (disposed || socketRef.current !== socket) return;
        const message = parseServerMessage(event.data);
        if (!message) return;
        if (message.type === "snapshot") {
          // A snapshot proves the link works end to end: the next drop starts the backoff afresh.
          attemptsRef.current = 0;
          setAttempts(0);
        }
        dispatch(message);
        const ended =
          message.type === "experiment_completed" ||
          message.type === "experiment_failed" ||
          message.type === "experiment_cancelled" ||
          (message.type === "snapshot" &&
            ["completed", "failed", "cancelled", "interrupted"].includes(message.experiment.status));
        if (ended) {
          doneRef.current = true;
          setConnection("closed");
          socket.close(1000, "experiment ended");
        }
      };
      socket.onclose = (event: CloseEvent) => {
        if (disposed || socketRef.current !== socket) return;
        socketRef.current = null;
        if (event.code === CLOSE_NOT_FOUND) {
          doneRef.current = true;
          setConnection("not_found");
          return;
        }
        if (doneRef.current) {
          setConnection("closed");
          return;
        }
        scheduleReconnect();
      };
      socket.onerror = () => {
        // The close event that always follows an error decides what happens next.
      };
    };

    connectRef.current = () => {
      clearTimer();
      connect();
    };
    connect();

    return () => {
      disposed = true;
      clearTimer();
      const socket = socketRef.current;
      socketRef.current = null;
      if (socket && socket.readyState <= 1) socket.close(1000, "page left");
    };
  }, [experimentId]);

  const reconnectNow = useCallback(() => {
    if (connection === "reconnecting") connectRef.current();
  }, [connection]);

  return { state, connection, attempts, retryInMs, reconnectNow };
}
