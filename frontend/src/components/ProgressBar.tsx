/** An accessible progress bar (role=progressbar with its value), used for runs, uploads and downloads. */
interface ProgressBarProps {
  label: string;
  /** 0..100, or null for "in progress, amount unknown". */
  percent: number | null;
  size?: "sm" | "md";
}

export function ProgressBar({ label, percent, size = "md" }: ProgressBarProps) {
  const clamped = percent === null ? null : Math.max(0, Math.min(100, percent));
  return (
    <div
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={clamped ?? undefined}
      aria-valuetext={clamped === null ? "in progress" : `${Math.round(clamped)} percent`}
      className={`w-full overflow-hidden rounded-full bg-slate-200 ${size === "sm" ? "h-1.5" : "h-3"}`}
    >
      <div
        className={`h-full rounded-full bg-sky-700 transition-[width] duration-500 ${clamped === null ? "w-1/3 animate-pulse" : ""}`}
        style={clamped === null ? undefined : { width: `${clamped}%` }}
      />
    </div>
  );
}
