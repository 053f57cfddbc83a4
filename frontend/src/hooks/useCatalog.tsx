/**
 * The catalog (every technique, board, goal, dataset and architecture), loaded once and shared by every page:
 * no list in the app is written in the frontend.
 */
import { createContext, useContext, type ReactNode } from "react";
import { getCatalog } from "../api/client";
import type { Catalog } from "../api/catalog";
import { ApiKeyForm } from "../components/ApiKeyForm";
import { ErrorState, Loading } from "../components/States";
import { useAsync } from "./useAsync";

const CatalogContext = createContext<Catalog | null>(null);

export function CatalogProvider({ children, loader = getCatalog }: { children: ReactNode; loader?: typeof getCatalog }) {
  const catalog = useAsync((signal) => loader(signal), []);
  if (catalog.status === "error" && catalog.httpStatus === 401) {
    return (
      <main className="mx-auto max-w-3xl p-6">
        <ApiKeyForm message={catalog.error} onSaved={catalog.reload} />
      </main>
    );
  }
  if (catalog.status === "error") {
    return (
      <main className="mx-auto max-w-3xl p-6">
        <ErrorState title="EdgeOpt could not load its catalog" message={catalog.error} onRetry={catalog.reload} />
      </main>
    );
  }
  if (catalog.status === "loading" || !catalog.data) {
    return (
      <main className="mx-auto max-w-3xl p-6">
        <Loading what="EdgeOpt" />
      </main>
    );
  }
  return <CatalogContext.Provider value={catalog.data}>{children}</CatalogContext.Provider>;
}

/** For tests and stories: provide a catalog directly. */
export const CatalogContextProvider = CatalogContext.Provider;

export function useCatalog(): Catalog {
  const catalog = useContext(CatalogContext);
  if (!catalog) throw new Error("useCatalog must be used inside <CatalogProvider>");
  return catalog;
}
