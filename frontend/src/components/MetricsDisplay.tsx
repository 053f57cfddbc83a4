/** Original against current accuracy and size, as the run goes. */
import type { LiveMetrics } from "../api/ws";
import { formatMegabytes, formatPercent } from "../lib/format";
import { METRIC_HELP } from "../lib/glossary";
import { InfoTip } from "./InfoTip";

function Pair({ label, help, original, current }: { label: string; help: string; original: string; current: string }) {
  return (
    <div className="rounded-md bg-slate-50 p-3">
      <dt className="flex items-center text-sm font-medium text-slate-700">
        {label}
        <InfoTip label={label}>{help}</InfoTip>
      </dt>
      <dd className="mt-1 flex flex-wrap items-baseline gap-x-3 text-sm">
        <span>
          original <span className="font-semibold">{original}</span>
        </span>
        <span aria-hidden="true">→</span>
        <span>
          latest <span className="font-semibold">{current}</span>
        </span>
      </dd>
    </div>
  );
}

export function MetricsDisplay({ metrics }: { metrics: LiveMetrics | null }) {
  return (
    <section className="card" aria-labelledby="metrics-heading">
      <h2 id="metrics-heading" className="h-section">
        Metrics
      </h2>
      {!metrics || metrics.original_accuracy === null ? (
        <p className="mt-2 text-sm text-slate-600">The original model is being measured…</p>
      ) : (
        <dl className="mt-3 grid gap-3 sm:grid-cols-2">
          <Pair
            label="Accuracy"
            help={METRIC_HELP.accuracy}
            original={formatPercent(metrics.original_accuracy)}
            current={formatPercent(metrics.current_accuracy)}
          />
          <Pair
            label="Size"
            help={METRIC_HELP.size}
            original={formatMegabytes(metrics.original_size_mb)}
            current={formatMegabytes(metrics.current_size_mb)}
          />
        </dl>
      )}
    </section>
  );
}
