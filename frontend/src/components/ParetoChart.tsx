/**
 * Accuracy against size or board latency, one point per result. The Pareto front comes from the recommender (over
 * accuracy, size and latency together, so no line joins it in a 2-D view) and is drawn in a stronger colour;
 * hovering a point shows its figures.
 */
import { useId, useState } from "react";
import {
  CartesianGrid,
  Legend,
  ResponsiveContainer,
  Scatter,
  ScatterChart,
  Tooltip,
  XAxis,
  YAxis,
  type TooltipContentProps,
  type TooltipValueType,
} from "recharts";
import type { ChartPoint } from "../lib/results";
import { axisTicks } from "../lib/axisTicks";
import { formatMegabytes, formatMs, formatPercent } from "../lib/format";
import { METRIC_HELP } from "../lib/glossary";
import { InfoTip } from "./InfoTip";

type Axis = "size" | "latency";

function PointTooltip({ active, payload }: TooltipContentProps<TooltipValueType, string | number>) {
  const point = active ? (payload?.[0]?.payload as ChartPoint | undefined) : undefined;
  if (!point) return null;
  return (
    <div className="rounded-md border border-slate-300 bg-white p-2 text-xs shadow">
      <p className="font-semibold">{point.title}</p>
      <p>Accuracy {formatPercent(point.accuracy)}</p>
      <p>Size {formatMegabytes(point.sizeMb)}</p>
      <p>Latency {formatMs(point.latencyMs)}</p>
      {point.onFront && <p className="text-sky-800">On the Pareto front</p>}
      {point.recommended && <p className="font-semibold text-sky-800">Recommended</p>}
    </div>
  );
}

export function ParetoChart({ points, deviceTitle }: { points: ChartPoint[]; deviceTitle: string }) {
  const id = useId();
  const [axis, setAxis] = useState<Axis>("size");
  const x = (p: ChartPoint) => (axis === "size" ? p.sizeMb : p.latencyMs);
  const usable = points.filter((p) => x(p) !== null);
  const toDatum = (p: ChartPoint) => ({ ...p, x: x(p), y: p.accuracy * 100 });
  const front = usable.filter((p) => p.onFront).map(toDatum).sort((a, b) => (a.x ?? 0) - (b.x ?? 0));
  const others = usable.filter((p) => !p.onFront && !p.isBaseline).map(toDatum);
  const baseline = usable.filter((p) => p.isBaseline).map(toDatum);
  const xLabel = axis === "size" ? "Size (MB)" : `Latency on ${deviceTitle} (ms)`;
  const xAxis = axisTicks(usable.map((p) => x(p) ?? 0), { lower: 0 });
  const yAxis = axisTicks(usable.map((p) => p.accuracy * 100), { lower: 0, upper: 100 });
  const results = usable.filter((p) => !p.isBaseline);
  const summary = front.length
    ? `Pareto front: ${front.map((p) => p.title).join(", ")}.`
    : "No technique result is on the Pareto front.";

  return (
    <section className="card space-y-3" aria-labelledby={`${id}-heading`}>
      <div className="flex flex-wrap items-center justify-between gap-2">
        <h2 id={`${id}-heading`} className="h-section flex items-center">
          Trade-offs
          <InfoTip label="the Pareto front">{METRIC_HELP.pareto}</InfoTip>
        </h2>
        <fieldset className="flex items-center gap-3 text-sm">
          <legend className="sr-only">Horizontal axis</legend>
          <label className="inline-flex items-center gap-1">
            <input type="radio" name={`${id}-axis`} checked={axis === "size"} onChange={() => setAxis("size")} />
            Accuracy vs size
          </label>
          <label className="inline-flex items-center gap-1">
            <input type="radio" name={`${id}-axis`} checked={axis === "latency"} onChange={() => setAxis("latency")} />
            Accuracy vs latency
          </label>
        </fieldset>
      </div>
      {results.length > 0 && <p className="text-sm text-slate-700">{summary}</p>}
      {results.length === 0 ? (
        <p className="text-sm text-slate-600">No completed technique has this figure, so there is nothing to plot.</p>
      ) : (
        <div className="h-72 w-full" role="img" aria-label={`Chart of accuracy against ${xLabel}. ${summary}`}>
          <ResponsiveContainer width="100%" height="100%">
            <ScatterChart margin={{ top: 10, right: 24, bottom: 24, left: 24 }}>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis
                type="number"
                dataKey="x"
                name={xLabel}
                domain={xAxis.domain}
                ticks={xAxis.ticks}
                interval={0}
                padding={{ left: 12, right: 12 }}
                tickFormatter={(value: number) => value.toFixed(xAxis.decimals)}
                label={{ value: xLabel, position: "bottom", offset: 4 }}
              />
              <YAxis
                type="number"
                dataKey="y"
                name="Accuracy (%)"
                domain={yAxis.domain}
                ticks={yAxis.ticks}
                interval={0}
                width={48}
                padding={{ top: 8, bottom: 12 }}
                tickFormatter={(value: number) => value.toFixed(yAxis.decimals)}
                label={{ value: "Accuracy (%)", angle: -90, position: "left", offset: 8, style: { textAnchor: "middle" } }}
              />
              <Tooltip content={PointTooltip} />
              <Legend verticalAlign="top" />
              <Scatter name="Pareto front" data={front} fill="#0369a1" />
              <Scatter name="Other results" data={others} fill="#94a3b8" />
              <Scatter name="Original model" data={baseline} fill="#b45309" shape="diamond" />
            </ScatterChart>
          </ResponsiveContainer>
        </div>
      )}
    </section>
  );
}
