/** The finished experiment: recommendation, every result, trade-offs, boards, downloads, and what-if goals. */
import { useMemo, useState } from "react";
import { Link, useParams } from "react-router";
import { getExperiment, getResults, recomputeRecommendation } from "../api/client";
import { type ExperimentStatus, statusIn, titleOf } from "../api/catalog";
import { errorMessage } from "../api/errors";
import type { Constraints, GoalName, Recommendation, Report } from "../api/types";
import { BoardComparison } from "../components/BoardComparison";
import { BoardCorrectionNote } from "../components/BoardCorrectionNote";
import { DownloadButton } from "../components/DownloadButton";
import { GoalConstraintsEditor } from "../components/GoalConstraintsEditor";
import { ParetoChart } from "../components/ParetoChart";
import { RecommendationCard } from "../components/RecommendationCard";
import { StrengthSearchCurves } from "../components/StrengthSearchCurves";
import { ResultsTable } from "../components/ResultsTable";
import { EmptyState, ErrorState, Loading } from "../components/States";
import { StatusBadge } from "../components/StatusBadge";
import { useAsync } from "../hooks/useAsync";
import { useCatalog } from "../hooks/useCatalog";
import { inputsFromConstraints } from "../lib/setupForm";
import { chartPoints } from "../lib/results";
import { routes } from "../routes";

// How an experiment that has no recommendation ended, for the recommendation card ("the experiment ... before any
// technique finished"); keyed by the generated status union, so a new status fails the type check until it has one.
const ENDED_AS: Record<ExperimentStatus, string | undefined> = {
  created: undefined,
  ready: undefined,
  queued: undefined,
  running: undefined,
  completed: "ended",
  failed: "failed",
  cancelled: "was cancelled",
  interrupted: "was interrupted",
};

export function ResultsPage() {
  const { experimentId = "" } = useParams();
  const catalog = useCatalog();
  const loaded = useAsync(
    async (signal) => {
      const [report, experiment] = await Promise.all([getResults(experimentId, signal), getExperiment(experimentId, signal)]);
      return { report, experiment };
    },
    [experimentId],
  );
  const [recommendation, setRecommendation] = useState<Recommendation | null>(null);
  const [goal, setGoal] = useState<string | null>(null);
  const [recomputing, setRecomputing] = useState(false);
  const [recomputeError, setRecomputeError] = useState<string | null>(null);

  const report: Report | null = loaded.data?.report ?? null;
  const current = recommendation ?? report?.recommendation ?? null;
  const titles = useMemo(() => Object.fromEntries(catalog.techniques.map((t) => [t.name, t.title])), [catalog]);

  if (loaded.status === "loading" && !loaded.data) return <Loading what="the results" />;
  if (loaded.status === "error" || !report || !loaded.data) {
    return <ErrorState title="The results could not be loaded" message={loaded.error ?? "Unknown error."} onRetry={loaded.reload} />;
  }

  const experiment = loaded.data.experiment;
  const device = report.experiment.device;
  const deviceTitle = titleOf(catalog.devices, device);
  const runs = report.runs ?? [];
  const shownGoal = goal ?? current?.goal ?? report.experiment.goal;
  const name = experiment.name || `Experiment ${experiment.id.slice(0, 8)}`;
  const active = statusIn(catalog.statuses.active, experiment.status);
  const chosen = experiment.techniques.length || runs.length;
  const finished = runs.filter((r) => ["completed", "failed", "skipped"].includes(r.status)).length;
  const counted =
    active || finished === chosen
      ? `${chosen} ${chosen === 1 ? "technique" : "techniques"}`
      : `${finished} of ${chosen} ${chosen === 1 ? "technique" : "techniques"} finished`;

  const onRecompute = (newGoal: string, constraints: Constraints) => {
    setRecomputing(true);
    setRecomputeError(null);
    recomputeRecommendation(experimentId, newGoal as GoalName, constraints).then(
      (result) => {
        setRecommendation(result);
        setGoal(newGoal);
        setRecomputing(false);
      },
      (error: unknown) => {
        setRecomputeError(errorMessage(error));
        setRecomputing(false);
      },
    );
  };

  return (
    <div className="space-y-6">
      <div className="flex flex-wrap items-center justify-between gap-3">
        <h1 className="h-page flex flex-wrap items-center gap-3">
          Results: {name} <StatusBadge status={experiment.status} />
        </h1>
        <p className="text-sm text-slate-700">
          {titleOf(catalog.datasets, report.experiment.dataset)} · {deviceTitle} · {counted}
        </p>
      </div>
      <p className="text-sm text-slate-700" data-testid="declared-input">
        Model input: {describeInput(report.experiment.preprocessing, catalog.preprocessing_presets)}
      </p>
      {active && (
        <p role="status" className="rounded-md bg-sky-50 p-3 text-sm text-sky-950">
          The experiment is still running; these are the results so far.{" "}
          <Link className="underline" to={routes.progress(experimentId)}>Watch the progress</Link>
        </p>
      )}
      {experiment.error && experiment.status !== "completed" && (
        <p role="alert" className="rounded-md bg-orange-50 p-3 text-sm text-orange-950">
          {experiment.error}
        </p>
      )}
      {!report.baseline && runs.length === 0 ? (
        active ? (
          <EmptyState title="No results yet">The original model is measured first; results appear as techniques finish.</EmptyState>
        ) : (
          <EmptyState title="No results">
            The experiment ended ({experiment.status}) before the original model was measured, so there is nothing to
            compare. {experiment.error ? "The reason is above." : "Start it again from the home page."}
          </EmptyState>
        )
      ) : (
        <>
          <div className="grid gap-6 lg:grid-cols-[3fr_2fr]">
            <RecommendationCard
              recommendation={current}
              run={runs.find((r) => r.technique === current?.technique)}
              device={device}
              deviceTitle={deviceTitle}
              goalTitle={titleOf(catalog.goals, shownGoal)}
              techniques={catalog.techniques}
              busy={recomputing}
              endedAs={active ? undefined : ENDED_AS[experiment.status as ExperimentStatus]}
            />
            <GoalConstraintsEditor
              catalog={catalog}
              goals={catalog.goals}
              initialGoal={shownGoal}
              initialConstraints={inputsFromConstraints(report.experiment.constraints ?? {})}
              busy={recomputing}
              error={recomputeError}
              onSubmit={onRecompute}
            />
          </div>
          <section aria-labelledby="table-heading" className="space-y-2">
            <h2 id="table-heading" className="h-section">
              All results
            </h2>
            <BoardCorrectionNote correction={report.board_correction} deviceTitle={deviceTitle} />
            <ResultsTable
              runs={runs}
              baseline={report.baseline}
              recommendation={current}
              device={device}
              deviceTitle={deviceTitle}
              techniques={catalog.techniques}
              renderActions={(run) =>
                run.artifact ? (
                  <DownloadButton
                    experimentId={experimentId}
                    technique={run.technique}
                    artifact={run.artifact}
                    formats={run.formats ?? {}}
                    title={titles[run.technique] ?? run.technique}
                  />
                ) : null
              }
              renderBaselineActions={() =>
                report.baseline?.artifact ? (
                  <DownloadButton
                    experimentId={experimentId}
                    technique="baseline"
                    artifact={report.baseline.artifact}
                    formats={{}}
                    title="Original model"
                  />
                ) : null
              }
            />
          </section>
          <ParetoChart points={chartPoints(runs, report.baseline, current, device, titles)} deviceTitle={deviceTitle} />
          <StrengthSearchCurves runs={runs} titles={titles} />
          <BoardComparison
            runs={runs}
            baseline={report.baseline}
            devices={catalog.devices}
            chosenDevice={device}
            techniques={catalog.techniques}
          />
        </>
      )}
    </div>
  );
}

/** The declared input convention in one line, as the CLI prints it; the model's own when none was declared. */
function describeInput(
  declared: { preset: string; input_size?: number[] | null; channel_order: string; value_range: string } | null | undefined,
  presets: { name: string; title: string }[],
): string {
  if (!declared) return "the model's own convention";
  const size = declared.input_size ? `${declared.input_size[0]}x${declared.input_size[1]}` : "the model's input size";
  const [low, high] = declared.value_range.split("-");
  return `${size}, ${declared.channel_order.toUpperCase()}, ${low}..${high}, ${titleOf(presets, declared.preset)}`;
}
