/** "Technique 3 of 7" (or "Measuring the original model" before the first technique), percent and overall ETA. */
import type { OverallProgress } from "../api/ws";
import { formatDuration } from "../lib/format";
import { METRIC_HELP } from "../lib/glossary";
import { InfoTip } from "./InfoTip";
import { ProgressBar } from "./ProgressBar";

export function OverallProgressBar({
  overall,
  finished,
  measuringOriginal = false,
}: {
  overall: OverallProgress | null;
  finished: boolean;
  /** The worker is still exporting and measuring the original model: no technique has started. */
  measuringOriginal?: boolean;
}) {
  if (!overall) {
    return (
      <section className="card space-y-2" aria-label="Overall progress">
        <p className="font-medium">Waiting for the worker to start…</p>
        <ProgressBar label="Overall progress" percent={null} />
      </section>
    );
  }
  const current = Math.min(overall.total_techniques, overall.completed_techniques + (finished ? 0 : 1));
  return (
    <section className="card space-y-2" aria-label="Overall progress">
      <div className="flex flex-wrap items-baseline justify-between gap-2">
        <p className="text-lg font-semibold">
          {finished
            ? `${overall.completed_techniques} of ${overall.total_techniques} techniques done`
            : measuringOriginal
              ? "Measuring the original model"
              : `Technique ${current} of ${overall.total_techniques}`}
        </p>
        <p className="text-sm text-slate-700">
          <span className="font-semibold" data-testid="overall-percent">
            {Math.round(overall.progress_percent)} %
          </span>
          {!finished && (
            <>
              {" · "}about {formatDuration(overall.eta_seconds)} left
              <InfoTip label="time left">{METRIC_HELP.eta}</InfoTip>
            </>
          )}
        </p>
      </div>
      <ProgressBar label="Overall progress" percent={overall.progress_percent} />
    </section>
  );
}
