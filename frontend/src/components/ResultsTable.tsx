/**
 * Every run against the original: accuracy and drop, size and compression, host latency, and the estimates on
 * the chosen board. Sortable by any column; the recommended row is highlighted; each cell a limit judges is green
 * (met) or red (missed), with the verdict also written out for those who do not see colour.
 */
import { useState } from "react";
import type { TechniqueInfo } from "../api/catalog";
import type { BaselineResult, BoardLatency, DeviceEstimate, Recommendation, RunResult } from "../api/types";
import {
  formatBytes,
  formatAccuracyChange,
  formatEnergy,
  formatMegabytes,
  formatMs,
  formatPercent,
  formatRatio,
} from "../lib/format";
import { CONSTRAINT_LABELS, METRIC_HELP } from "../lib/glossary";
import { constraintVerdict, sortRuns, type SortDirection, type SortKey } from "../lib/results";
import { InfoTip } from "./InfoTip";
import { ScrollRegion } from "./ScrollRegion";
import { StatusBadge } from "./StatusBadge";
import type { ReactNode } from "react";

interface ResultsTableProps {
  runs: RunResult[];
  baseline: BaselineResult | null | undefined;
  recommendation: Recommendation | null | undefined;
  device: string;
  deviceTitle: string;
  techniques: TechniqueInfo[];
  /** Rendered in the last column of each completed run (the download button). */
  renderActions?: (run: RunResult) => ReactNode;
  /** Rendered in the last column of the original model's row (its download button). */
  renderBaselineActions?: () => ReactNode;
}

interface Column {
  key: SortKey;
  label: string;
  help: string;
  numeric: boolean;
}

function columns(deviceTitle: string): Column[] {
  return [
    { key: "technique", label: "Technique", help: "The optimization applied to the original model.", numeric: false },
    { key: "status", label: "Status", help: METRIC_HELP.status, numeric: false },
    { key: "accuracy", label: "Accuracy", help: METRIC_HELP.accuracy, numeric: true },
    { key: "accuracy_drop", label: "Change", help: METRIC_HELP.accuracy_drop, numeric: true },
    { key: "size_bytes", label: "Size", help: METRIC_HELP.size, numeric: true },
    { key: "compression_ratio", label: "Compression", help: METRIC_HELP.compression_ratio, numeric: true },
    { key: "host_latency", label: "Host latency", help: METRIC_HELP.host_latency, numeric: true },
    {
      key: "board_latency",
      label: "Board latency",
      help: `${METRIC_HELP.board_latency} Board: ${deviceTitle}.`,
      numeric: true,
    },
    { key: "board_memory", label: "Memory", help: `${METRIC_HELP.board_memory} Board: ${deviceTitle}.`, numeric: true },
    { key: "board_energy", label: "Energy", help: `${METRIC_HELP.board_energy} Board: ${deviceTitle}.`, numeric: true },
  ];
}

/** The technique column stays in view while a narrow screen scrolls the other columns sideways. */
const STICKY = "sticky left-0 z-10 min-w-[9rem] max-w-[12rem] shadow-[inset_-1px_0_0_var(--color-slate-200)]";

/** A host latency that stayed spread out after a re-measurement (p90 above 1.5x the median) is marked as rough. */
function NoisyMark({ latency }: { latency?: { host: number; host_p90: number; noisy: boolean } | null }) {
  if (!latency?.noisy) return null;
  const spread = (latency.host_p90 / latency.host).toFixed(1);
  return (
    <span className="ml-1 text-xs font-semibold text-amber-800" title={`p90 was ${spread}x the median while timed`}>
      rough
    </span>
  );
}

/** The estimate corrected by measurements on the user's own boards of this device (report.board_correction). */
function CorrectedEstimate({ estimate }: { estimate?: DeviceEstimate | null | undefined }) {
  if (estimate?.corrected_latency_ms == null) return null;
  return (
    <span className="block text-xs font-normal text-slate-700" data-testid="board-corrected">
      {formatMs(estimate.corrected_latency_ms)} by your boards
    </span>
  );
}

/** A latency an agent measured on a real board, under the estimate: its figure, the board's own name and the day. */
function MeasuredOnBoard({ board }: { board?: BoardLatency | null }) {
  if (!board) return null;
  const day = new Date(board.measured_at).toISOString().slice(0, 10);
  return (
    <span className="ml-auto block max-w-[12rem] whitespace-normal text-xs font-normal text-slate-700" data-testid="board-measurement">
      {formatMs(board.latency_ms)} measured on {board.board} {day}
    </span>
  );
}

function Cell({
  children,
  verdict,
  numeric,
}: {
  children: ReactNode;
  verdict?: { constraint: keyof typeof CONSTRAINT_LABELS; met: boolean } | undefined;
  numeric: boolean;
}) {
  const tone = verdict ? (verdict.met ? "bg-emerald-100 text-emerald-950" : "bg-red-100 text-red-950") : "";
  return (
    <td
      className={`whitespace-nowrap px-2 py-2 ${numeric ? "text-right tabular-nums" : ""} ${tone}`}
      data-constraint={verdict ? (verdict.met ? "met" : "missed") : undefined}
    >
      {children}
      {verdict && (
        <span className="ml-1 text-xs" title={`${CONSTRAINT_LABELS[verdict.constraint]}: ${verdict.met ? "met" : "missed"}`}>
          <span aria-hidden="true">{verdict.met ? "✓" : "✗"}</span>
          <span className="sr-only">{verdict.met ? " meets your limit" : " misses your limit"}</span>
        </span>
      )}
    </td>
  );
}

export function ResultsTable(props: ResultsTableProps) {
  const { runs, baseline, recommendation, device, deviceTitle, techniques } = props;
  const [sortKey, setSortKey] = useState<SortKey>("technique");
  const [direction, setDirection] = useState<SortDirection>("ascending");
  const order = techniques.map((t) => t.name);
  const sorted = sortRuns(runs, sortKey, direction, device, order);
  const cols = columns(deviceTitle);
  const titleOf = (name: string) => techniques.find((t) => t.name === name)?.title ?? name;

  const onSort = (key: SortKey) => {
    if (key === sortKey) setDirection(direction === "ascending" ? "descending" : "ascending");
    else {
      setSortKey(key);
      setDirection("ascending");
    }
  };

  return (
    <ScrollRegion label="Results table">
      <table className="w-full border-collapse bg-white text-sm">
        <caption className="sr-only">
          Results of every technique; the recommended one is marked. Column headers sort the table.
        </caption>
        <thead className="bg-slate-100 text-slate-700">
          <tr>
            {cols.map((col, index) => (
              <th
                key={col.key}
                scope="col"
                aria-sort={sortKey === col.key ? direction : "none"}
                className={`whitespace-nowrap px-2 py-2 font-medium ${col.numeric ? "text-right" : "text-left"} ${index === 0 ? STICKY : ""} ${index === 0 ? "bg-slate-100" : ""}`}
              >
                <span className={`inline-flex items-center ${col.numeric ? "justify-end" : ""}`}>
                  <button type="button" className="inline-flex items-center gap-1 rounded hover:underline focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-600" onClick={() => onSort(col.key)}>
                    {col.label}
                    <span aria-hidden="true" className="text-xs">
                      {sortKey === col.key ? (direction === "ascending" ? "▲" : "▼") : "↕"}
                    </span>
                  </button>
                  <InfoTip label={col.label}>{col.help}</InfoTip>
                </span>
              </th>
            ))}
            <th scope="col" className="whitespace-nowrap px-2 py-2 text-left font-medium">
              Download
            </th>
          </tr>
        </thead>
        <tbody>
          {baseline && (
            <tr className="border-t border-slate-200 bg-slate-50 text-slate-700">
              <th scope="row" className={`px-2 py-2 text-left font-medium ${STICKY} bg-slate-50`}>
                Original model
              </th>
              <td className="px-2 py-2">baseline</td>
              <td className="px-2 py-2 text-right tabular-nums">{formatPercent(baseline.accuracy)}</td>
              <td className="px-2 py-2 text-right">—</td>
              <td className="px-2 py-2 text-right tabular-nums">{formatBytes(baseline.size_bytes)}</td>
              <td className="px-2 py-2 text-right tabular-nums">1.00×</td>
              <td className="px-2 py-2 text-right tabular-nums">
                {formatMs(baseline.latency_ms.host)}
                <NoisyMark latency={baseline.latency_ms} />
              </td>
              <td className="px-2 py-2 text-right tabular-nums">
                {formatMs(baseline.estimates?.[device]?.latency_ms)}
                <CorrectedEstimate estimate={baseline.estimates?.[device]} />
                <MeasuredOnBoard board={baseline.board_latency} />
              </td>
              <td className="px-2 py-2 text-right tabular-nums">{formatMegabytes(baseline.estimates?.[device]?.memory_mb)}</td>
              <td className="px-2 py-2 text-right tabular-nums">{formatEnergy(baseline.estimates?.[device]?.energy_mj)}</td>
              <td className="px-2 py-2">{props.renderBaselineActions?.()}</td>
            </tr>
          )}
          {sorted.map((run) => {
            const best = recommendation?.technique === run.technique;
            const estimate = run.estimates?.[device];
            const verdict = (key: SortKey) => constraintVerdict(recommendation, run.technique, key);
            return (
              <tr
                key={run.technique}
                className={`border-t border-slate-200 ${best ? "outline outline-2 -outline-offset-2 outline-sky-600 bg-sky-50" : ""}`}
                data-recommended={best ? "true" : undefined}
              >
                <th scope="row" className={`px-2 py-2 text-left font-medium ${STICKY} ${best ? "bg-sky-50" : "bg-white"}`}>
                  <span className="inline-flex items-center">
                    {titleOf(run.technique)}
                    <InfoTip label={titleOf(run.technique)}>
                      {techniques.find((t) => t.name === run.technique)?.summary ?? run.technique}
                    </InfoTip>
                  </span>
                  {best && (
                    <span className="mt-0.5 block w-fit rounded-full bg-sky-700 px-2 py-0.5 text-xs font-semibold text-white">
                      Recommended
                    </span>
                  )}
                </th>
                <td className="px-2 py-2">
                  <StatusBadge status={run.status} />
                  {run.status !== "completed" && (run.error || run.notes) && (
                    <span className="block max-w-[16rem] whitespace-normal text-xs text-slate-600">{run.error ?? run.notes}</span>
                  )}
                </td>
                <Cell numeric verdict={verdict("accuracy")}>{formatPercent(run.accuracy)}</Cell>
                <Cell numeric verdict={verdict("accuracy_drop")}>{formatAccuracyChange(run.accuracy_drop)}</Cell>
                <Cell numeric verdict={verdict("size_bytes")}>{formatBytes(run.size_bytes)}</Cell>
                <Cell numeric>{formatRatio(run.compression_ratio)}</Cell>
                <Cell numeric>
                  {formatMs(run.latency_ms?.host)}
                  <NoisyMark latency={run.latency_ms} />
                </Cell>
                <Cell numeric verdict={verdict("board_latency")}>
                  {formatMs(estimate?.latency_ms)}
                  <CorrectedEstimate estimate={estimate} />
                  <MeasuredOnBoard board={run.board_latency} />
                </Cell>
                <Cell numeric>
                  {formatMegabytes(estimate?.memory_mb)}
                  {estimate && !estimate.fits && <span className="ml-1 text-xs font-semibold text-red-800">does not fit</span>}
                </Cell>
                <Cell numeric>{formatEnergy(estimate?.energy_mj)}</Cell>
                <td className="px-2 py-2">{run.status === "completed" && props.renderActions ? props.renderActions(run) : null}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </ScrollRegion>
  );
}
