/**
 * The WebSocket contract (docs/architecture.md section 7).
 *
 * OpenAPI has no place for a WebSocket, so the service exports its message models (`edgeopt.service.messages`,
 * a union discriminated on `type`) into `openapi.json` beside the routes, and these types are the generated ones:
 * the server and the web app cannot drift apart without `src/api/contract.test.ts` or the type check failing.
 */
import { API_KEY_QUERY, getApiKey } from "./auth";
import type { components } from "./schema.gen";

type Schemas = components["schemas"];

export type CurrentTechnique = Schemas["CurrentTechnique"];
export type OverallProgress = Schemas["OverallProgress"];
export type LiveMetrics = Schemas["LiveMetrics"];
/** What a progress update says, without its envelope; the snapshot carries the same shape. */
export type ProgressBody = Schemas["ProgressBody"];
export type ProgressUpdateMessage = Schemas["ProgressUpdateMessage"];
export type SnapshotExperiment = Schemas["SnapshotExperiment"];
export type SnapshotMessage = Schemas["SnapshotMessage"];
export type TechniqueCompletedMessage = Schemas["TechniqueCompletedMessage"];
export type TechniqueFailedMessage = Schemas["TechniqueFailedMessage"];
export type ServerMessage = Schemas["ServerMessage"];
export type ServerMessageType = ServerMessage["type"];

/** The close code the service uses for an unknown experiment: reconnecting cannot help. */
export const CLOSE_NOT_FOUND = 4404;

export function experimentSocketUrl(experimentId: string, base: Location | URL = window.location): string {
  const scheme = base.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${base.host}/ws/experiments/${encodeURIComponent(experimentId)}`;
  // Browsers cannot set headers on a WebSocket, so the key travels as a query parameter (the service accepts both).
  const key = getApiKey();
  return key ? `${url}?${API_KEY_QUERY}=${encodeURIComponent(key)}` : url;
}

// A record over the generated union: the type check fails when the service adds or drops a message type.
const HANDLED: Record<ServerMessageType, true> = {
  snapshot: true,
  progress_update: true,
  technique_completed: true,
  technique_failed: true,
  experiment_completed: true,
  experiment_failed: true,
  experiment_cancelled: true,
};
const KNOWN_TYPES = new Set<string>(Object.keys(HANDLED));

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
