/** Number formatting shared by every page, so one figure never appears in two different styles. */

export const MB = 1_000_000; // docs/architecture.md section 2: MB = 10^6 bytes of the deployable artifact.

export function formatPercent(fraction: number | null | undefined, digits = 1): string {
  if (fraction === null || fraction === undefined || Number.isNaN(fraction)) return "—";
  return `${(fraction * 100).toFixed(digits)} %`;
}

/** An accuracy drop (a fraction; positive is a loss) as the change a user reads: "−1.4 pt" lost, "+0.3 pt" gained. */
export function formatAccuracyChange(drop: number | null | undefined): string {
  if (drop === null || drop === undefined || Number.isNaN(drop)) return "—";
  const points = drop * 100;
  if (Math.abs(points) < 0.05) return "0.0 pt";
  return points > 0 ? `−${points.toFixed(1)} pt` : `+${(-points).toFixed(1)} pt`;
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || Number.isNaN(bytes)) return "—";
  if (bytes < 1000) return `${bytes} B`;
  if (bytes < MB) return `${(bytes / 1000).toFixed(1)} kB`;
  if (bytes < 1000 * MB) return `${(bytes / MB).toFixed(2)} MB`;
  return `${(bytes / (1000 * MB)).toFixed(2)} GB`;
}

export function formatMegabytes(mb: number | null | undefined): string {
  if (mb === null || mb === undefined || Number.isNaN(mb)) return "—";
  return formatBytes(mb * MB);
}

export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1) return `${ms.toFixed(3)} ms`;
  if (ms < 100) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(0)} ms`;
}

export function formatRatio(ratio: number | null | undefined): string {
  if (ratio === null || ratio === undefined || Number.isNaN(ratio)) return "—";
  return `${ratio.toFixed(2)}×`;
}

export function formatEnergy(mj: number | null | undefined): string {
  if (mj === null || mj === undefined || Number.isNaN(mj)) return "—";
  return mj < 10 ? `${mj.toFixed(2)} mJ` : `${mj.toFixed(0)} mJ`;
}

/** "about 3 min" style durations for ETAs; null means the service has no estimate yet. */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds) || seconds < 0) return "estimating…";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  const rest = s % 60;
  if (m < 60) return rest ? `${m} min ${rest} s` : `${m} min`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

export function formatDateTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}
