/** The technique running now: its stage in words, its percent and its own ETA. */
import type { TechniqueInfo } from "../api/catalog";
import type { CurrentTechnique } from "../api/ws";
import { formatDuration } from "../lib/format";
import { InfoTip } from "./InfoTip";
import { ProgressBar } from "./ProgressBar";

export function TechniqueProgressCard({
  current,
  techniques,
}: {
  current: CurrentTechnique | null;
  techniques: TechniqueInfo[];
}) {
  if (!current) return null;
  const info = techniques.find((t) => t.name === current.name);
  const title = !current.name || current.name === "baseline" ? "Measuring the original model" : (info?.title ?? current.name);
  return (
    <section className="card space-y-2" aria-label="Current technique">
      <div className="flex flex-wrap items-baseline justify-between gap-2">
        <h2 className="h-section flex items-center">
          {title}
          {info && <InfoTip label={info.title}>{info.summary}</InfoTip>}
        </h2>
        <p className="text-sm text-slate-700">
          {Math.round(current.progress_percent)} % · about {formatDuration(current.eta_seconds)} left
        </p>
      </div>
      <p className="text-sm text-slate-700" aria-live="polite" data-testid="stage">
        {current.stage || "Working…"}
      </p>
      <ProgressBar label={`${title} progress`} percent={current.progress_percent} size="sm" />
    </section>
  );
}
