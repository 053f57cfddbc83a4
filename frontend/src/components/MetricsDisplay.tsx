/** Original against the latest finished result: accuracy, size and compression ratio, as the run goes. */
import type { LiveMetrics } from "../api/ws";
import { formatMegabytes, formatPercent } from "../lib/format";
import { METRIC_HELP } from "../lib/glossary";
import { InfoTip } from "./InfoTip";

function ratio(original: number | null, current: number | null): string {
  if (original === null || current === null || current <= 0) return "—";
  return `${(original / current).toFixed(2)}×`;
}

export function MetricsDisplay({ metrics, finished = false }: { metrics: LiveMetrics | null; finished?: boolean }) {
  const measured = metrics !== null && metrics.original_accuracy !== null;
  return (
    <section className="card" aria-labelledby="metrics-heading">
      <h2 id="metrics-heading" className="h-section">
        Metrics
      </h2>
      {!measured ? (
        <p className="mt-2 text-sm text-slate-600">
          {finished
            ? "The experiment stopped before the original model was measured."
            : "The original model is being measured…"}
        </p>
      ) : (
        <table className="mt-3 w-full text-sm">
          <thead>
            <tr className="text-left text-slate-600">
              <th scope="col" className="py-1 pr-3 font-medium">Metric</th>
              <th scope="col" className="py-1 pr-3 text-right font-medium">Original</th>
              <th scope="col" className="py-1 text-right font-medium">Latest result</th>
            </tr>
          </thead>
          <tbody className="tabular-nums">
            <tr>
              <th scope="row" className="py-1 pr-3 text-left font-medium">
                <span className="flex items-center">
                  Accuracy
                  <InfoTip label="Accuracy">{METRIC_HELP.accuracy}</InfoTip>
                </span>
              </th>
              <td className="py-1 pr-3 text-right">{formatPercent(metrics.original_accuracy)}</td>
              <td className="py-1 text-right">{formatPercent(metrics.current_accuracy)}</td>
            </tr>
            <tr>
              <th scope="row" className="py-1 pr-3 text-left font-medium">
                <span className="flex items-center">
                  Size
                  <InfoTip label="Size">{METRIC_HELP.size}</InfoTip>
                </span>
              </th>
              <td className="py-1 pr-3 text-right">{formatMegabytes(metrics.original_size_mb)}</td>
              <td className="py-1 text-right">{formatMegabytes(metrics.current_size_mb)}</td>
            </tr>
            <tr>
              <th scope="row" className="py-1 pr-3 text-left font-medium">Compression ratio</th>
              <td className="py-1 pr-3 text-right">1.00×</td>
              <td className="py-1 text-right">{ratio(metrics.original_size_mb, metrics.current_size_mb)}</td>
            </tr>
          </tbody>
        </table>
      )}
    </section>
  );
}
