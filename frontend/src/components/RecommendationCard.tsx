/** The recommended result: why, its pros and cons, and how it stands against each of the user's limits. */
import type { TechniqueInfo } from "../api/catalog";
import type { ConstraintName, Recommendation, RunResult } from "../api/types";
import { formatBytes, formatAccuracyChange, formatMs, formatPercent, formatRatio } from "../lib/format";
import { CONSTRAINT_LABELS } from "../lib/glossary";
import { InfoTip } from "./InfoTip";

interface RecommendationCardProps {
  recommendation: Recommendation | null | undefined;
  run: RunResult | undefined;
  device: string;
  deviceTitle: string;
  goalTitle: string;
  techniques: TechniqueInfo[];
  busy?: boolean;
  /** How the experiment ended, when it did without a recommendation ("was cancelled", "failed"). */
  endedAs?: string;
}

export function RecommendationCard({
  recommendation,
  run,
  device,
  deviceTitle,
  goalTitle,
  techniques,
  busy,
  endedAs,
}: RecommendationCardProps) {
  if (!recommendation) {
    return (
      <section className="card" aria-labelledby="rec-heading">
        <h2 id="rec-heading" className="h-section">
          Recommendation
        </h2>
        <p className="mt-2 text-sm text-slate-600">
          {endedAs
            ? `No recommendation: the experiment ${endedAs} before any technique finished.`
            : "No recommendation yet: it is made once the techniques have run."}
        </p>
      </section>
    );
  }
  const info = techniques.find((t) => t.name === recommendation.technique);
  const verdicts = recommendation.technique ? (recommendation.constraints?.[recommendation.technique] ?? {}) : {};
  const pros = recommendation.pros ?? [];
  const cons = recommendation.cons ?? [];
  return (
    <section className="card space-y-3 border-sky-300" aria-labelledby="rec-heading" aria-busy={busy}>
      <div className="flex flex-wrap items-baseline justify-between gap-2">
        <h2 id="rec-heading" className="h-section">
          Recommendation for “{goalTitle}”
        </h2>
        {Object.keys(verdicts).length === 0 ? null : recommendation.all_constraints_met ? (
          <span className="rounded-full bg-emerald-100 px-2 py-0.5 text-xs font-semibold text-emerald-900">
            Meets all your limits
          </span>
        ) : (
          <span className="rounded-full bg-amber-100 px-2 py-0.5 text-xs font-semibold text-amber-950">
            Best effort: not every limit is met
          </span>
        )}
      </div>
      {recommendation.technique ? (
        <p className="flex items-center text-xl font-bold text-sky-900">
          <span data-testid="recommended-technique">{info?.title ?? recommendation.technique}</span>
          {info && <InfoTip label={info.title}>{info.summary}</InfoTip>}
        </p>
      ) : (
        <p className="text-lg font-semibold text-slate-800">No result can be recommended.</p>
      )}
      {run && run.status === "completed" && (
        <p className="text-sm text-slate-700">
          {formatPercent(run.accuracy)} accuracy ({formatAccuracyChange(run.accuracy_drop)}), {formatBytes(run.size_bytes)} (
          {formatRatio(run.compression_ratio)} smaller), {formatMs(run.estimates?.[device]?.latency_ms)} on {deviceTitle}
        </p>
      )}
      <p className="text-slate-800">{recommendation.reasoning}</p>
      {(pros.length > 0 || cons.length > 0) && (
        <div className="grid gap-3 sm:grid-cols-2">
          <Points title="Pros" tone="text-emerald-900" items={pros} />
          <Points title="Cons" tone="text-red-900" items={cons} />
        </div>
      )}
      <div>
        <h3 className="text-sm font-semibold">Your limits</h3>
        {Object.keys(verdicts).length === 0 ? (
          <p className="mt-1 text-sm text-slate-600">No limits were set.</p>
        ) : (
          <ul className="mt-1 flex flex-wrap gap-2" aria-label="Limits of the recommended result">
            {Object.entries(verdicts).map(([name, met]) => (
              <li
                key={name}
                data-constraint={met ? "met" : "missed"}
                className={`rounded-md px-2 py-1 text-xs font-medium ${met ? "bg-emerald-100 text-emerald-950" : "bg-red-100 text-red-950"}`}
              >
                {CONSTRAINT_LABELS[name as ConstraintName] ?? name}: {met ? "met" : "missed"}
              </li>
            ))}
          </ul>
        )}
      </div>
    </section>
  );
}

/** A titled bullet list of the recommendation's pros or cons; nothing at all when there are none. */
function Points({ title, tone, items }: { title: string; tone: string; items: readonly string[] }) {
  if (items.length === 0) return null;
  return (
    <div>
      <h3 className={`text-sm font-semibold ${tone}`}>{title}</h3>
      <ul className="mt-1 list-disc space-y-0.5 pl-5 text-sm">
        {items.map((item) => (
          <li key={item}>{item}</li>
        ))}
      </ul>
    </div>
  );
}
