/**
 * A horizontally scrollable box for wide tables on phones. It is focusable and named so keyboard users can scroll
 * it too (axe: scrollable-region-focusable).
 */
import type { ReactNode } from "react";

export function ScrollRegion({ label, children }: { label: string; children: ReactNode }) {
  return (
    // tabIndex on a non-interactive element on purpose: scrolling with the keyboard needs focus.
    <div role="region" aria-label={label} tabIndex={0} className="relative overflow-x-auto rounded-lg focus:outline-none focus-visible:ring-2 focus-visible:ring-sky-600">
      {children}
    </div>
  );
}
