/** Every technique of the experiment in order: finished ones with their headline figures, the current one, the rest. */
import type { TechniqueInfo } from "../api/catalog";
import type { RunResult } from "../api/types";
import { formatBytes, formatAccuracyChange, formatPercent, formatRatio } from "../lib/format";
import { StatusBadge } from "./StatusBadge";

interface TimelineProps {
  order: string[];
  runs: Record<string, RunResult>;
  current: string | null;
  techniques: TechniqueInfo[];
}

export function Timeline({ order, runs, current, techniques }: TimelineProps) {
  return (
    <section className="card" aria-labelledby="timeline-heading">
      <h2 id="timeline-heading" className="h-section">
        Techniques
      </h2>
      <ol className="mt-3 space-y-2">
        {order.map((name, index) => {
          const run = runs[name];
          const title = techniques.find((t) => t.name === name)?.title ?? name;
          const state = run ? run.status : name === current ? "running" : "pending";
          return (
            <li
              key={name}
              className={`flex flex-wrap items-center justify-between gap-2 rounded-md border p-2 text-sm ${
                state === "running" ? "border-sky-400 bg-sky-50" : "border-slate-200"
              }`}
              aria-current={state === "running" ? "step" : undefined}
            >
              <span className="flex items-center gap-2">
                <span className="w-5 text-right text-slate-500">{index + 1}.</span>
                <span className="font-medium">{title}</span>
                {state === "pending" ? <span className="text-xs text-slate-500">waiting</span> : <StatusBadge status={state} />}
              </span>
              {run?.status === "completed" && (
                <span className="text-slate-700">
                  {formatPercent(run.accuracy)} ({formatAccuracyChange(run.accuracy_drop)}) · {formatBytes(run.size_bytes)} ·{" "}
                  {formatRatio(run.compression_ratio)} compression
                </span>
              )}
              {run && run.status !== "completed" && (
                <span className="text-slate-700">{run.error ?? run.notes}</span>
              )}
            </li>
          );
        })}
      </ol>
    </section>
  );
}
