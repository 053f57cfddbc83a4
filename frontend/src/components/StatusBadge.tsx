/** Experiment and run statuses as coloured labels; the word is always shown, colour only adds to it. */
import type { ExperimentStatus } from "../api/catalog";
import type { RunResult } from "../api/types";

// Keyed by the generated status unions: a status the service adds fails the type check until it has a colour.
const STYLES: Record<ExperimentStatus | RunResult["status"], string> = {
  created: "bg-slate-100 text-slate-700",
  ready: "bg-slate-100 text-slate-800",
  queued: "bg-amber-100 text-amber-900",
  running: "bg-sky-100 text-sky-900",
  completed: "bg-emerald-100 text-emerald-900",
  failed: "bg-red-100 text-red-900",
  cancelled: "bg-slate-200 text-slate-800",
  interrupted: "bg-orange-100 text-orange-900",
  skipped: "bg-slate-100 text-slate-700",
};

export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`inline-block rounded-full px-2 py-0.5 text-xs font-medium ${(STYLES as Record<string, string>)[status] ?? STYLES.created}`}>
      {status}
    </span>
  );
}
