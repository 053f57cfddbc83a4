/** Says when the live connection is down and when it will try again; hidden while all is well. */
import type { ConnectionState } from "../hooks/useExperimentSocket";

interface ConnectionBannerProps {
  connection: ConnectionState;
  attempts: number;
  retryInMs: number | null;
  onRetryNow: () => void;
}

export function ConnectionBanner({ connection, attempts, retryInMs, onRetryNow }: ConnectionBannerProps) {
  if (connection === "connecting") {
    return (
      <p role="status" className="text-sm text-slate-600">
        Connecting to the live progress…
      </p>
    );
  }
  if (connection !== "reconnecting") return null;
  const seconds = retryInMs === null ? null : Math.max(1, Math.round(retryInMs / 1000));
  return (
    <div
      role="status"
      data-testid="reconnecting"
      className="flex flex-wrap items-center justify-between gap-2 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-950"
    >
      <span>
        <span className="font-semibold">Reconnecting…</span> The live connection was lost
        {seconds !== null ? `; trying again in ${seconds} s` : ""} (attempt {attempts}). Nothing is lost: the progress so far is
        sent again on reconnect.
      </span>
      <button type="button" className="btn-secondary" onClick={onRetryNow}>
        Retry now
      </button>
    </div>
  );
}
