/**
 * How the results page reads a report: which figure each constraint judges, how rows sort, what a "row" is.
 * Kept apart from the components so the table, the chart and the tests agree on one definition.
 */
import type { BaselineResult, ConstraintName, Recommendation, RunResult } from "../api/types";
import { MB } from "./format";

export type SortKey =
  | "technique"
  | "accuracy"
  | "accuracy_drop"
  | "size_bytes"
  | "compression_ratio"
  | "host_latency"
  | "board_latency"
  | "board_memory"
  | "board_energy"
  | "status";

export type SortDirection = "ascending" | "descending";

/** The column whose figure each constraint judges. */
export const CONSTRAINT_COLUMN: Record<ConstraintName, SortKey> = {
  min_accuracy: "accuracy",
  max_accuracy_drop: "accuracy_drop",
  max_size_mb: "size_bytes",
  max_latency_ms: "board_latency",
};

export function sortValue(run: RunResult, key: SortKey, device: string, techniqueOrder: string[]): number | string | null {
  const estimate = run.estimates?.[device];
  switch (key) {
    case "technique":
      return techniqueOrder.indexOf(run.technique);
    case "status":
      return run.status;
    case "accuracy":
      return run.accuracy ?? null;
    case "accuracy_drop":
      return run.accuracy_drop ?? null;
    case "size_bytes":
      return run.size_bytes ?? null;
    case "compression_ratio":
      return run.compression_ratio ?? null;
    case "host_latency":
      return run.latency_ms?.host ?? null;
    case "board_latency":
      return estimate?.latency_ms ?? null;
    case "board_memory":
      return estimate?.memory_mb ?? null;
    case "board_energy":
      return estimate?.energy_mj ?? null;
  }
}

/** Sorted copy; runs without the figure (failed, skipped) always go last, whatever the direction. */
export function sortRuns(
  runs: RunResult[],
  key: SortKey,
  direction: SortDirection,
  device: string,
  techniqueOrder: string[],
): RunResult[] {
  const sign = direction === "ascending" ? 1 : -1;
  return [...runs].sort((a, b) => {
    const va = sortValue(a, key, device, techniqueOrder);
    const vb = sortValue(b, key, device, techniqueOrder);
    if (va === null && vb === null) return techniqueOrder.indexOf(a.technique) - techniqueOrder.indexOf(b.technique);
    if (va === null) return 1;
    if (vb === null) return -1;
    if (typeof va === "string" || typeof vb === "string") return sign * String(va).localeCompare(String(vb));
    return sign * (va - vb);
  });
}

/** Pass (true), fail (false) or not judged (undefined) for one cell of the table. */
export function constraintVerdict(
  recommendation: Recommendation | null | undefined,
  technique: string,
  column: SortKey,
): { constraint: ConstraintName; met: boolean } | undefined {
  const verdicts = recommendation?.constraints?.[technique];
  if (!verdicts) return undefined;
  for (const [constraint, met] of Object.entries(verdicts)) {
    if (CONSTRAINT_COLUMN[constraint as ConstraintName] === column) return { constraint: constraint as ConstraintName, met };
  }
  return undefined;
}

export interface ChartPoint {
  technique: string;
  title: string;
  accuracy: number;
  sizeMb: number;
  latencyMs: number | null;
  onFront: boolean;
  isBaseline: boolean;
  recommended: boolean;
}

export function chartPoints(
  runs: RunResult[],
  baseline: BaselineResult | null | undefined,
  recommendation: Recommendation | null | undefined,
  device: string,
  titles: Record<string, string>,
): ChartPoint[] {
  const front = new Set(recommendation?.pareto ?? []);
  const points: ChartPoint[] = [];
  if (baseline) {
    points.push({
      technique: "baseline",
      title: "Original model",
      accuracy: baseline.accuracy,
      sizeMb: baseline.size_bytes / MB,
      latencyMs: baseline.estimates?.[device]?.latency_ms ?? null,
      onFront: false,
      isBaseline: true,
      recommended: false,
    });
  }
  for (const run of runs) {
    if (run.status !== "completed" || run.accuracy === null || run.accuracy === undefined || !run.size_bytes) continue;
    points.push({
      technique: run.technique,
      title: titles[run.technique] ?? run.technique,
      accuracy: run.accuracy,
      sizeMb: run.size_bytes / MB,
      latencyMs: run.estimates?.[device]?.latency_ms ?? null,
      onFront: front.has(run.technique),
      isBaseline: false,
      recommended: recommendation?.technique === run.technique,
    });
  }
  return points;
}
