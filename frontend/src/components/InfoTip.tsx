/**
 * A small "?" that explains a term in one sentence, on hover and on keyboard focus.
 *
 * The text is linked with aria-describedby, so screen readers read it with the button, and Escape hides it
 * (WCAG 1.4.13: content on hover or focus must be dismissible).
 */
import { useId, useState, type ReactNode } from "react";

interface InfoTipProps {
  /** What the tip is about, read as the button's name: "About Accuracy". */
  label: string;
  children: ReactNode;
}

export function InfoTip({ label, children }: InfoTipProps) {
  const id = useId();
  const [open, setOpen] = useState(false);
  return (
    <span className="relative inline-flex align-middle">
      <button
        type="button"
        aria-label={`About ${label}`}
        aria-describedby={id}
        className="ml-1 inline-flex h-4 w-4 items-center justify-center rounded-full border border-slate-400 text-[10px] font-bold leading-none text-slate-600 hover:bg-slate-200 focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-600"
        onMouseEnter={() => setOpen(true)}
        onMouseLeave={() => setOpen(false)}
        onFocus={() => setOpen(true)}
        onBlur={() => setOpen(false)}
        onKeyDown={(event) => {
          if (event.key === "Escape") setOpen(false);
        }}
        onClick={() => setOpen((value) => !value)}
      >
        ?
      </button>
      <span
        id={id}
        role="tooltip"
        className={`${open ? "block" : "hidden"} absolute left-1/2 top-6 z-30 w-60 max-w-[70vw] -translate-x-1/2 rounded-md bg-slate-900 px-3 py-2 text-left text-xs font-normal normal-case leading-snug text-white shadow-lg`}
      >
        {children}
      </span>
    </span>
  );
}
