/** The same results estimated on every board of the catalog, with "does not fit" where memory runs out. */
import type { NamedInfo, TechniqueInfo } from "../api/catalog";
import type { BaselineResult, DeviceEstimate, RunResult } from "../api/types";
import { formatEnergy, formatMegabytes, formatMs } from "../lib/format";
import { METRIC_HELP } from "../lib/glossary";
import { InfoTip } from "./InfoTip";
import { ScrollRegion } from "./ScrollRegion";

interface BoardComparisonProps {
  runs: RunResult[];
  baseline: BaselineResult | null | undefined;
  devices: NamedInfo[];
  chosenDevice: string;
  techniques: TechniqueInfo[];
}

function EstimateCell({ estimate }: { estimate: DeviceEstimate | undefined }) {
  if (!estimate) return <td className="px-3 py-2 text-slate-500">not estimated</td>;
  return (
    <td className={`px-3 py-2 tabular-nums ${estimate.fits ? "" : "bg-red-50"}`}>
      <span className="block">{formatMs(estimate.latency_ms)}</span>
      <span className="block text-xs text-slate-600">
        {formatMegabytes(estimate.memory_mb)} · {formatEnergy(estimate.energy_mj)}
      </span>
      {!estimate.fits && <span className="block text-xs font-semibold text-red-800">does not fit</span>}
    </td>
  );
}

export function BoardComparison({ runs, baseline, devices, chosenDevice, techniques }: BoardComparisonProps) {
  const rows: { key: string; title: string; estimates: Record<string, DeviceEstimate> }[] = [];
  if (baseline) rows.push({ key: "baseline", title: "Original model", estimates: baseline.estimates ?? {} });
  for (const run of runs) {
    if (run.status !== "completed") continue;
    rows.push({
      key: run.technique,
      title: techniques.find((t) => t.name === run.technique)?.title ?? run.technique,
      estimates: run.estimates ?? {},
    });
  }
  return (
    <section className="card space-y-3" aria-labelledby="boards-heading">
      <h2 id="boards-heading" className="h-section flex items-center">
        On every board
        <InfoTip label="board estimates">
          {METRIC_HELP.board_latency} Memory and energy per inference are shown beneath; {METRIC_HELP.fits.toLowerCase()}
        </InfoTip>
      </h2>
      {rows.length === 0 ? (
        <p className="text-sm text-slate-600">No completed result to compare yet.</p>
      ) : (
        <ScrollRegion label="Board comparison">
          <table className="w-full min-w-[640px] border-collapse text-left text-sm">
            <caption className="sr-only">Estimated latency, memory and energy per inference on each board</caption>
            <thead className="bg-slate-100 text-slate-700">
              <tr>
                <th scope="col" className="sticky left-0 z-10 bg-slate-100 px-3 py-2">Result</th>
                {devices.map((device) => (
                  <th key={device.name} scope="col" className="px-3 py-2">
                    {device.title}
                    {device.name === chosenDevice && <span className="ml-1 text-xs font-normal">(target)</span>}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.key} className="border-t border-slate-200">
                  {/* Sticky: on a phone the board columns scroll sideways under the result's name. */}
                  <th scope="row" className="sticky left-0 z-10 min-w-[8rem] bg-white px-3 py-2 font-medium shadow-[inset_-1px_0_0_var(--color-slate-200)]">
                    {row.title}
                  </th>
                  {devices.map((device) => (
                    <EstimateCell key={device.name} estimate={row.estimates[device.name]} />
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </ScrollRegion>
      )}
    </section>
  );
}
