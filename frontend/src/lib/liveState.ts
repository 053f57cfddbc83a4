/**
 * The live view of one running experiment, built from WebSocket messages.
 *
 * A pure reducer so the merge rules can be tested without a socket: a snapshot (sent on every connect, so after
 * every reconnect) is the server's truth and replaces what it covers, while runs this page already saw and the
 * snapshot somehow lacks are kept, and progress never moves backwards because of a stale live message.
 */
import type { ProgressBody, ServerMessage, SnapshotExperiment } from "../api/ws";
import type { ExperimentStatus } from "../api/catalog";
import type { BaselineResult, RunResult } from "../api/types";

export type Outcome =
  | { kind: "completed" }
  | { kind: "failed"; message: string }
  | { kind: "cancelled"; message: string }
  | { kind: "interrupted"; message: string };

export interface LiveState {
  experiment: SnapshotExperiment | null;
  baseline: BaselineResult | null;
  /** Finished runs (completed, failed or skipped), by technique. */
  runs: Record<string, RunResult>;
  /** Order in which runs finished, for the timeline. */
  finishedOrder: string[];
  progress: ProgressBody | null;
  outcome: Outcome | null;
  /** How many snapshots were received: more than one means the page reconnected. */
  snapshots: number;
  updates: number;
}

export const initialLiveState: LiveState = {
  experiment: null,
  baseline: null,
  runs: {},
  finishedOrder: [],
  progress: null,
  outcome: null,
  snapshots: 0,
  updates: 0,
};

const TERMINAL_STATUS: Partial<Record<ExperimentStatus, Outcome["kind"]>> = {
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
  interrupted: "interrupted",
};

function outcomeFromStatus(experiment: SnapshotExperiment): Outcome | null {
  const kind = TERMINAL_STATUS[experiment.status];
  if (!kind) return null;
  if (kind === "completed") return { kind };
  const fallback =
    kind === "cancelled"
      ? "The experiment was cancelled; finished runs are kept."
      : kind === "interrupted"
        ? "The service stopped during this experiment; start it again to finish the remaining techniques."
        : "The experiment failed.";
  return { kind, message: experiment.error ?? fallback };
}

function addRuns(state: LiveState, runs: RunResult[]): Pick<LiveState, "runs" | "finishedOrder"> {
  const merged = { ...state.runs };
  const order = [...state.finishedOrder];
  for (const run of runs) {
    merged[run.technique] = run;
    if (!order.includes(run.technique)) order.push(run.technique);
  }
  return { runs: merged, finishedOrder: order };
}

/** True when `next` is not behind `current` (same or more techniques done, same or more percent). */
function isNotBehind(current: ProgressBody | null, next: ProgressBody): boolean {
  if (!current) return true;
  const a = current.overall_progress;
  const b = next.overall_progress;
  if (b.completed_techniques !== a.completed_techniques) return b.completed_techniques > a.completed_techniques;
  return b.progress_percent >= a.progress_percent;
}

export function liveReducer(state: LiveState, message: ServerMessage): LiveState {
  switch (message.type) {
    case "snapshot": {
      const runs = addRuns(state, message.runs ?? []);
      return {
        ...state,
        ...runs,
        experiment: message.experiment,
        baseline: message.baseline ?? state.baseline,
        progress: message.progress ?? state.progress,
        outcome: state.outcome ?? outcomeFromStatus(message.experiment),
        snapshots: state.snapshots + 1,
      };
    }
    case "progress_update": {
      const body: ProgressBody = {
        current_technique: message.current_technique,
        overall_progress: message.overall_progress,
        metrics: message.metrics,
      };
      if (!isNotBehind(state.progress, body)) return state;
      const experiment =
        state.experiment && state.experiment.status !== "running" && !state.outcome
          ? { ...state.experiment, status: "running" as const }
          : state.experiment;
      return { ...state, experiment, progress: body, updates: state.updates + 1 };
    }
    case "technique_completed":
      return { ...state, ...addRuns(state, [message.run]) };
    case "technique_failed":
      return { ...state, ...addRuns(state, [message.run]) };
    case "experiment_completed":
      return { ...state, outcome: { kind: "completed" }, experiment: withStatus(state.experiment, "completed") };
    case "experiment_failed":
      return {
        ...state,
        outcome: { kind: "failed", message: message.error || "The experiment failed." },
        experiment: withStatus(state.experiment, "failed"),
      };
    case "experiment_cancelled":
      return {
        ...state,
        outcome: { kind: "cancelled", message: "The experiment was cancelled; finished runs are kept." },
        experiment: withStatus(state.experiment, "cancelled"),
      };
  }
}

function withStatus(experiment: SnapshotExperiment | null, status: ExperimentStatus): SnapshotExperiment | null {
  return experiment ? { ...experiment, status } : experiment;
}
