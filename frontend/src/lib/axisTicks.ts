/**
 * Chart axes a reader can take in at a glance: evenly spaced ticks on a round step (1, 2, 2.5 or 5 times a power
 * of ten) that cover the data, optionally kept inside hard bounds (accuracy never above 100 %), and tick labels with
 * exactly as many decimals as the step needs ("0.4", "1.2", never "0.400" next to "1.20").
 */
const STEPS = [1, 2, 2.5, 5, 10];

export interface AxisTicks {
  ticks: number[];
  domain: [number, number];
  decimals: number;
}

function roundStep(rough: number): number {
  const power = 10 ** Math.floor(Math.log10(rough));
  return (STEPS.find((m) => m * power >= rough - 1e-12) ?? 10) * power;
}

export function axisTicks(
  values: number[],
  { target = 5, lower = -Infinity, upper = Infinity }: { target?: number; lower?: number; upper?: number } = {},
): AxisTicks {
  const finite = values.filter((v) => Number.isFinite(v));
  let min = finite.length ? Math.min(...finite) : 0;
  let max = finite.length ? Math.max(...finite) : 1;
  if (max - min < 1e-9) {
    // One value (or all equal): a small window around it, so the point sits inside the chart.
    const pad = Math.abs(max) > 1e-9 ? Math.abs(max) * 0.02 : 1;
    min -= pad;
    max += pad;
  }
  const step = roundStep((max - min) / Math.max(1, target - 1));
  let first = Math.floor(min / step + 1e-9) * step;
  let last = Math.ceil(max / step - 1e-9) * step;
  if (first < lower) first = Math.ceil(lower / step - 1e-9) * step;
  if (last > upper) last = Math.floor(upper / step + 1e-9) * step;
  const count = Math.round((last - first) / step);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / 10 ** Math.floor(Math.log10(step)) === 2.5 ? 1 : 0));
  const ticks = Array.from({ length: count + 1 }, (_, i) => Number((first + i * step).toFixed(decimals)));
  return { ticks, domain: [ticks[0] ?? first, ticks.at(-1) ?? last], decimals };
}
