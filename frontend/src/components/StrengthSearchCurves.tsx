/**
 * For each technique whose strength was searched for the accuracy budget: validation accuracy against the settings
 * tried, the budget's floor as a line and the chosen setting marked, with the same figures as a table for readers
 * who do not use the chart. Runs with a fixed strength (no `search`) are not shown.
 */
import { useId } from "react";
import {
  CartesianGrid,
  ReferenceLine,
  ResponsiveContainer,
  Scatter,
  ScatterChart,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";
import type { RunResult } from "../api/types";
import { axisTicks } from "../lib/axisTicks";

type Search = NonNullable<RunResult["search"]>;
type Trial = NonNullable<Search["trials"]>[number];

function SearchCurve({ title, search }: { title: string; search: Search }) {
  const id = useId();
  const floor = 100 * search.baseline_val_accuracy - search.budget_points;
  const trials = search.trials ?? [];
  const point = (t: Trial) => ({ x: t.setting, y: 100 * t.val_accuracy });
  const chosen = trials.filter((t) => t.setting === search.chosen).map(point);
  const kept = trials.filter((t) => t.within_budget && t.setting !== search.chosen).map(point);
  const over = trials.filter((t) => !t.within_budget && t.setting !== search.chosen).map(point);
  // Round, evenly spaced ticks (as on the Pareto chart) with padding, so no tick label meets another or the corner.
  const xAxis = axisTicks(trials.map((t) => t.setting), { lower: 0 });
  const yAxis = axisTicks([...trials.map((t) => 100 * t.val_accuracy), floor], { lower: 0, upper: 100 });
  return (
    <figure className="space-y-2" aria-labelledby={`${id}-caption`}>
      <figcaption id={`${id}-caption`} className="text-sm font-semibold">
        {title}: {search.knob} = {search.chosen}
      </figcaption>
      <p className="text-xs text-slate-700">{search.reason}</p>
      <div className="h-48 w-full" role="img" aria-label={`Validation accuracy against ${search.knob} for ${title}`}>
        <ResponsiveContainer width="100%" height="100%">
          <ScatterChart margin={{ top: 10, right: 20, bottom: 28, left: 10 }}>
            <CartesianGrid strokeDasharray="3 3" />
            <XAxis
              type="number"
              dataKey="x"
              domain={xAxis.domain}
              ticks={xAxis.ticks}
              interval={0}
              padding={{ left: 12, right: 12 }}
              tickFormatter={(v: number) => v.toFixed(xAxis.decimals)}
              label={{ value: search.knob, position: "bottom", offset: 4 }}
            />
            <YAxis
              type="number"
              dataKey="y"
              domain={yAxis.domain}
              ticks={yAxis.ticks}
              interval={0}
              width={48}
              padding={{ top: 8, bottom: 12 }}
              tickFormatter={(v: number) => v.toFixed(yAxis.decimals)}
            />
            <Tooltip />
            <ReferenceLine y={floor} stroke="#b45309" strokeDasharray="4 4" label="budget" />
            <Scatter name="Within budget" data={kept} fill="#0369a1" />
            <Scatter name="Over budget" data={over} fill="#94a3b8" />
            <Scatter name="Chosen" data={chosen} fill="#15803d" shape="star" />
          </ScatterChart>
        </ResponsiveContainer>
      </div>
      <table className="text-xs">
        <thead>
          <tr>
            <th scope="col" className="pr-3 text-left">{search.knob}</th>
            <th scope="col" className="pr-3 text-right">Validation accuracy</th>
            <th scope="col" className="pr-3 text-right">Drop (points)</th>
            <th scope="col" className="text-left">Verdict</th>
          </tr>
        </thead>
        <tbody>
          {trials.map((t) => (
            <tr key={t.setting}>
              <td className="pr-3">{t.setting}</td>
              <td className="pr-3 text-right">{(100 * t.val_accuracy).toFixed(1)} %</td>
              <td className="pr-3 text-right">{t.drop_points.toFixed(2)}</td>
              <td>{t.setting === search.chosen ? "chosen" : t.within_budget ? "within budget" : "over budget"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

export function StrengthSearchCurves({ runs, titles }: { runs: RunResult[]; titles: Record<string, string> }) {
  const id = useId();
  const searched = runs.filter((run) => run.search);
  if (searched.length === 0) return null;
  return (
    <section className="card space-y-4" aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`} className="h-section">
        Strength chosen for your accuracy budget
      </h2>
      <p className="text-sm text-slate-700">
        Each technique tried settings of its strength on a validation split carved from the training data and kept
        the strongest that stayed within your accuracy budget.
      </p>
      <div className="grid gap-6 md:grid-cols-2">
        {searched.map((run) => (
          <SearchCurve key={run.technique} title={titles[run.technique] ?? run.technique} search={run.search!} />
        ))}
      </div>
    </section>
  );
}
