/** Live progress of one experiment over its WebSocket; opens the results when it ends. */
import { useEffect, useState } from "react";
import { Link, useNavigate, useParams } from "react-router";
import { cancelExperiment, startExperiment } from "../api/client";
import { errorMessage } from "../api/errors";
import { ConnectionBanner } from "../components/ConnectionBanner";
import { MetricsDisplay } from "../components/MetricsDisplay";
import { OverallProgressBar } from "../components/OverallProgressBar";
import { EmptyState, ErrorState, Loading } from "../components/States";
import { StatusBadge } from "../components/StatusBadge";
import { TechniqueProgressCard } from "../components/TechniqueProgressCard";
import { Timeline } from "../components/Timeline";
import { useCatalog } from "../hooks/useCatalog";
import { useExperimentSocket } from "../hooks/useExperimentSocket";
import { routes } from "../routes";

/** How long the "finished" state stays on screen before the results open, so the user sees it happen. */
const RESULTS_DELAY_MS = 1200;

export function ProgressPage() {
  const { experimentId = "" } = useParams();
  const catalog = useCatalog();
  const navigate = useNavigate();
  const live = useExperimentSocket(experimentId);
  const [cancelState, setCancelState] = useState<"idle" | "sending" | "sent">("idle");
  const [actionError, setActionError] = useState<string | null>(null);
  const { state } = live;
  const outcome = state.outcome;

  useEffect(() => {
    if (outcome?.kind === "completed" || outcome?.kind === "cancelled") {
      const timer = setTimeout(() => navigate(routes.results(experimentId), { replace: true }), RESULTS_DELAY_MS);
      return () => clearTimeout(timer);
    }
    return undefined;
  }, [outcome, experimentId, navigate]);

  if (live.connection === "not_found") {
    return <ErrorState title="Experiment not found" message="It may have been deleted. Go back to your experiments." />;
  }
  if (!state.experiment) {
    return (
      <div className="space-y-4">
        <h1 className="h-page">Optimizing…</h1>
        <ConnectionBanner
          connection={live.connection}
          attempts={live.attempts}
          retryInMs={live.retryInMs}
          onRetryNow={live.reconnectNow}
        />
        <Loading what="the experiment" />
      </div>
    );
  }

  const experiment = state.experiment;
  const status = experiment.status;
  const order = experiment.techniques?.length ? experiment.techniques : catalog.techniques.map((t) => t.name);
  const current = state.progress?.current_technique ?? null;
  const running = status === "running" || status === "queued";
  const name = typeof experiment.name === "string" && experiment.name ? experiment.name : `Experiment ${experiment.id.slice(0, 8)}`;

  const onCancel = () => {
    setCancelState("sending");
    setActionError(null);
    cancelExperiment(experimentId).then(
      (experiment) => {
        setCancelState("sent");
        // A queued experiment is cancelled at once and no job will announce it: open the results now.
        if (experiment.status === "cancelled") navigate(routes.results(experimentId), { replace: true });
      },
      (error: unknown) => {
        setActionError(errorMessage(error));
        setCancelState("idle");
      },
    );
  };

  const onStart = () => {
    setActionError(null);
    startExperiment(experimentId).then(
      // The ended socket has stopped for good; a fresh page load follows the new run from a fresh snapshot.
      () => window.location.reload(),
      (error: unknown) => setActionError(errorMessage(error)),
    );
  };

  return (
    <div className="space-y-4">
      <div className="flex flex-wrap items-center justify-between gap-3">
        <h1 className="h-page flex items-center gap-3">
          {name} <StatusBadge status={status} />
        </h1>
        {running && (
          <button type="button" className="btn-danger" onClick={onCancel} disabled={cancelState !== "idle"}>
            {cancelState === "idle" ? "Cancel" : "Cancelling… (stops at the next stage)"}
          </button>
        )}
      </div>
      <ConnectionBanner
        connection={live.connection}
        attempts={live.attempts}
        retryInMs={live.retryInMs}
        onRetryNow={live.reconnectNow}
      />
      {actionError && (
        <p role="alert" className="rounded-md bg-red-50 p-3 text-sm text-red-900">
          {actionError}
        </p>
      )}

      {(status === "created" || status === "ready") && (
        <EmptyState title="This experiment has not started">
          {status === "ready" ? (
            <button type="button" className="btn-primary mt-2" onClick={onStart}>
              Start optimization
            </button>
          ) : (
            <p>It has no model yet. <Link className="text-sky-800 underline" to={routes.setup()}>Create a new experiment</Link>.</p>
          )}
        </EmptyState>
      )}

      {outcome && outcome.kind === "completed" && (
        <p role="status" className="rounded-md bg-emerald-50 p-3 text-emerald-900">
          All techniques finished. Opening the results…{" "}
          <Link className="underline" to={routes.results(experimentId)}>Open now</Link>
        </p>
      )}
      {outcome && outcome.kind !== "completed" && (
        <div role="alert" className="rounded-md border border-orange-300 bg-orange-50 p-3 text-sm text-orange-950">
          <p>{outcome.message}</p>
          <div className="mt-2 flex flex-wrap gap-2">
            <Link className="btn-secondary" to={routes.results(experimentId)}>See finished results</Link>
            {outcome.kind !== "cancelled" && (
              <button type="button" className="btn-secondary" onClick={onStart}>
                Start again (keeps finished runs)
              </button>
            )}
          </div>
        </div>
      )}

      <OverallProgressBar
        overall={state.progress?.overall_progress ?? null}
        finished={!running}
        measuringOriginal={isMeasuringOriginal(state.progress?.current_technique ?? null)}
      />
      {running && <TechniqueProgressCard current={current} techniques={catalog.techniques} />}
      <div className="grid gap-4 lg:grid-cols-2">
        <Timeline order={order} runs={state.runs} current={running ? (current?.name ?? null) : null} techniques={catalog.techniques} />
        <MetricsDisplay metrics={state.progress?.metrics ?? null} finished={!running} />
      </div>
    </div>
  );
}

/** Before the first technique the worker reports the original model as the current step ("baseline" or none). */
function isMeasuringOriginal(current: { name: string | null } | null): boolean {
  return current !== null && (current.name === null || current.name === "baseline");
}
