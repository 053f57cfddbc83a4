/** What EdgeOpt does, a way to start, and every past experiment with open and delete. */
import { useState } from "react";
import { Link } from "react-router";
import { deleteExperiment, listExperiments } from "../api/client";
import { statusIn, titleOf } from "../api/catalog";
import { errorMessage } from "../api/errors";
import type { ExperimentPublic } from "../api/types";
import { routes } from "../routes";
import { ScrollRegion } from "../components/ScrollRegion";
import { EmptyState, ErrorState, Loading } from "../components/States";
import { StatusBadge } from "../components/StatusBadge";
import { useAsync } from "../hooks/useAsync";
import { useCatalog } from "../hooks/useCatalog";
import { formatBytes, formatDateTime, formatMs, formatPercent } from "../lib/format";

export function experimentLink(experiment: Pick<ExperimentPublic, "id" | "status">): string {
  return ["completed", "cancelled", "failed"].includes(experiment.status)
    ? routes.results(experiment.id)
    : routes.progress(experiment.id);
}

export function modelLabel(experiment: ExperimentPublic, architectures: { name: string; title: string }[]): string {
  const original = (experiment.files ?? []).find((file) => file.role === "original");
  if (original) return original.original_filename;
  if (experiment.arch) return titleOf(architectures, experiment.arch);
  return "no model yet";
}

/**
 * The recommended result's key figures, as the experiment list carries them: no request per row. A queued or running
 * experiment shows none yet, even when it resumes one that had a recommendation: that may still change.
 */
function BestResult({ experiment }: { experiment: ExperimentPublic }) {
  const catalog = useCatalog();
  const best = experiment.recommended;
  if (!statusIn(catalog.statuses.finished, experiment.status)) return <span className="text-slate-500">—</span>;
  if (!best) return <span className="text-slate-500">none</span>;
  const title = best.technique === "baseline" ? "Original model" : titleOf(catalog.techniques, best.technique);
  return (
    <span>
      <span className="font-medium">{title}</span>
      <span className="block text-xs text-slate-600">
        {formatPercent(best.accuracy)} · {formatBytes(best.size_bytes)} · {formatMs(best.latency_host_ms)} on this host
      </span>
    </span>
  );
}

function DeleteButton({ experiment, onDeleted }: { experiment: ExperimentPublic; onDeleted: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const active = statusIn(useCatalog().statuses.active, experiment.status);
  const label = experiment.name || experiment.id.slice(0, 8);
  if (!confirming) {
    return (
      <>
        <button
          type="button"
          className="btn-danger"
          disabled={active}
          title={active ? "Cancel the experiment before deleting it." : undefined}
          aria-label={`Delete experiment ${label}`}
          onClick={() => setConfirming(true)}
        >
          Delete
        </button>
        {error && (
          <p role="alert" className="field-error">
            {error}
          </p>
        )}
      </>
    );
  }
  return (
    <span className="inline-flex gap-2">
      <button
        type="button"
        className="btn-danger"
        disabled={busy}
        aria-label={`Confirm deleting experiment ${label}`}
        onClick={() => {
          setBusy(true);
          deleteExperiment(experiment.id).then(onDeleted, (e: unknown) => {
            setError(errorMessage(e));
            setBusy(false);
            setConfirming(false);
          });
        }}
      >
        {busy ? "Deleting…" : "Confirm delete"}
      </button>
      <button type="button" className="btn-secondary" onClick={() => setConfirming(false)}>
        Keep
      </button>
    </span>
  );
}

export function HomePage() {
  const catalog = useCatalog();
  const experiments = useAsync((signal) => listExperiments(signal), []);

  return (
    <div className="space-y-6">
      <section className="card">
        <h1 className="h-page">Fit your image classifier onto a Raspberry Pi</h1>
        <p className="mt-2 max-w-3xl text-slate-700">
          EdgeOpt runs seven optimization techniques (quantization, pruning, distillation and their combinations) on
          your trained PyTorch or Keras model and measures every result for real. It estimates speed, memory and energy
          on Raspberry Pi 4, Pi 5 and Pi Zero 2 W, and recommends the best result for your goal.
        </p>
        <Link to={routes.setup()} className="btn-primary mt-4">
          New experiment
        </Link>
      </section>

      <section aria-labelledby="past-heading" className="space-y-3">
        <h2 id="past-heading" className="h-section">
          Past experiments
        </h2>
        {experiments.status === "loading" && !experiments.data && <Loading what="experiments" />}
        {experiments.status === "error" && (
          <ErrorState title="Experiments could not be loaded" message={experiments.error} onRetry={experiments.reload} />
        )}
        {experiments.data && experiments.data.items.length === 0 && (
          <EmptyState title="No experiments yet">
            Start one with <Link className="text-sky-800 underline" to={routes.setup()}>New experiment</Link>: upload a
            model, pick a board, and EdgeOpt does the rest.
          </EmptyState>
        )}
        {experiments.data && experiments.data.items.length > 0 && (
          <ScrollRegion label="Past experiments">
            <table className="stack-table w-full min-w-[720px] border-collapse bg-white text-left text-sm">
              <thead className="bg-slate-100 text-slate-700">
                <tr>
                  <th scope="col" className="px-3 py-2">Name</th>
                  <th scope="col" className="px-3 py-2">Model</th>
                  <th scope="col" className="px-3 py-2">Board</th>
                  <th scope="col" className="px-3 py-2">Status</th>
                  <th scope="col" className="px-3 py-2">Best result</th>
                  <th scope="col" className="px-3 py-2">Created</th>
                  <th scope="col" className="px-3 py-2"><span className="sr-only">Actions</span></th>
                </tr>
              </thead>
              <tbody>
                {experiments.data.items.map((experiment) => (
                  <tr key={experiment.id} className="border-t border-slate-200">
                    <td data-stack="title" className="px-3 py-2 font-medium">{experiment.name || <span className="text-slate-500">untitled</span>}</td>
                    <td data-label="Model" className="max-w-[14rem] truncate px-3 py-2">{modelLabel(experiment, catalog.architectures)}</td>
                    <td data-label="Board" className="px-3 py-2">{titleOf(catalog.devices, experiment.device)}</td>
                    <td data-stack="status" className="px-3 py-2"><StatusBadge status={experiment.status} /></td>
                    <td data-label="Best result" className="px-3 py-2"><BestResult experiment={experiment} /></td>
                    <td data-label="Created" className="whitespace-nowrap px-3 py-2">{formatDateTime(experiment.created_at)}</td>
                    <td data-stack="actions" className="whitespace-nowrap px-3 py-2">
                      <span className="inline-flex gap-2">
                        <Link
                          className="btn-secondary"
                          to={experimentLink(experiment)}
                          aria-label={`Open experiment ${experiment.name || experiment.id.slice(0, 8)}`}
                        >
                          Open
                        </Link>
                        <DeleteButton experiment={experiment} onDeleted={experiments.reload} />
                      </span>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </ScrollRegion>
        )}
      </section>
    </div>
  );
}
