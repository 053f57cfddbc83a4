/**
 * The WebSocket contract (docs/architecture.md section 7) as TypeScript.
 *
 * OpenAPI cannot describe WebSocket messages, so these shapes are written here from the design; the run results
 * they carry are the generated `RunResult` from the service's report models, so the two never drift apart.
 */
import { API_KEY_QUERY, getApiKey } from "./auth";
import type { BaselineResult, Recommendation, RunResult } from "./types";

export interface CurrentTechnique {
  /** null or "baseline" while the original model is being measured. */
  name: string | null;
  progress_percent: number;
  eta_seconds: number | null;
  stage: string;
}

export interface OverallProgress {
  completed_techniques: number;
  total_techniques: number;
  progress_percent: number;
  eta_seconds: number | null;
}

export interface LiveMetrics {
  original_accuracy: number | null;
  current_accuracy: number | null;
  original_size_mb: number | null;
  current_size_mb: number | null;
}

/** What a progress update says, without its envelope; the snapshot carries the same shape. */
export interface ProgressBody {
  current_technique: CurrentTechnique | null;
  overall_progress: OverallProgress;
  metrics: LiveMetrics;
}

export interface ProgressUpdateMessage extends ProgressBody {
  type: "progress_update";
  experiment_id: string;
}

export interface SnapshotExperiment {
  id: string;
  status: string;
  error?: string | null;
  techniques?: string[];
  [key: string]: unknown;
}

export interface SnapshotMessage {
  type: "snapshot";
  experiment_id: string;
  experiment: SnapshotExperiment;
  baseline?: BaselineResult | null;
  runs: RunResult[];
  progress: ProgressBody | null;
  recommendation?: Recommendation | null;
}

export interface TechniqueCompletedMessage {
  type: "technique_completed";
  experiment_id: string;
  technique: string;
  run: RunResult;
}

export interface TechniqueFailedMessage {
  type: "technique_failed";
  experiment_id: string;
  technique: string;
  error: string;
  run?: RunResult;
}

export interface ExperimentEndedMessage {
  type: "experiment_completed" | "experiment_failed" | "experiment_cancelled";
  experiment_id: string;
  error?: string | null;
  reason?: string | null;
}

export type ServerMessage =
  | SnapshotMessage
  | ProgressUpdateMessage
  | TechniqueCompletedMessage
  | TechniqueFailedMessage
  | ExperimentEndedMessage;

/** The close code the service uses for an unknown experiment: reconnecting cannot help. */
export const CLOSE_NOT_FOUND = 4404;

export function experimentSocketUrl(experimentId: string, base: Location | URL = window.location): string {
  const scheme = base.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${base.host}/ws/experiments/${encodeURIComponent(experimentId)}`;
  // Browsers cannot set headers on a WebSocket, so the key travels as a query parameter (the service accepts both).
  const key = getApiKey();
  return key ? `${url}?${API_KEY_QUERY}=${encodeURIComponent(key)}` : url;
}

const KNOWN_TYPES = new Set<string>([
  "snapshot",
  "progress_update",
  "technique_completed",
  "technique_failed",
  "experiment_completed",
  "experiment_failed",
  "experiment_cancelled",
]);

/** Parses one frame; unknown or malformed frames give null so a newer server cannot crash an older page. */
export function parseServerMessage(data: unknown): ServerMessage | null {
  if (typeof data !== "string") return null;
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return null;
  }
  if (typeof value !== "object" || value === null) return null;
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string" || !KNOWN_TYPES.has(type)) return null;
  return value as ServerMessage;
}
