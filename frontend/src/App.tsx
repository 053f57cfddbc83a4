import { lazy, Suspense } from "react";
import { BrowserRouter, Link, NavLink, Route, Routes } from "react-router";
import { Loading } from "./components/States";
import { CatalogProvider } from "./hooks/useCatalog";
import { HomePage } from "./pages/HomePage";
import { NotFoundPage } from "./pages/NotFoundPage";
import { ProgressPage } from "./pages/ProgressPage";
import { SetupPage } from "./pages/SetupPage";


// The results page carries the charting library; loading it on demand keeps the first page light.
const ResultsPage = lazy(() => import("./pages/ResultsPage").then((m) => ({ default: m.ResultsPage })));

function Header() {
  const navClass = ({ isActive }: { isActive: boolean }) =>
    `rounded px-2 py-1 text-sm font-medium ${isActive ? "bg-sky-100 text-sky-900" : "text-slate-700 hover:bg-slate-100"}`;
  return (
    <header className="border-b border-slate-200 bg-white">
      <div className="mx-auto flex max-w-7xl flex-wrap items-center justify-between gap-2 px-4 py-3">
        <Link to="/" className="text-lg font-bold text-sky-900">
          EdgeOpt
        </Link>
        <nav aria-label="Main">
          <ul className="flex gap-2">
            <li>
              <NavLink to="/" end className={navClass}>
                Experiments
              </NavLink>
            </li>
            <li>
              <NavLink to="/new" className={navClass}>
                New experiment
              </NavLink>
            </li>
          </ul>
        </nav>
      </div>
    </header>
  );
}

export function App() {
  return (
    <BrowserRouter>
      <a href="#main" className="sr-only focus:not-sr-only focus:absolute focus:left-2 focus:top-2 focus:z-50 focus:rounded focus:bg-white focus:p-2">
        Skip to content
      </a>
      <Header />
      <CatalogProvider>
        <main id="main" className="mx-auto max-w-7xl px-4 py-6">
          <Suspense fallback={<Loading what="the page" />}>
            <Routes>
              <Route path="/" element={<HomePage />} />
              <Route path="/new" element={<SetupPage />} />
              <Route path="/experiments/:experimentId/progress" element={<ProgressPage />} />
              <Route path="/experiments/:experimentId/results" element={<ResultsPage />} />
              <Route path="*" element={<NotFoundPage />} />
            </Routes>
          </Suspense>
        </main>
      </CatalogProvider>
    </BrowserRouter>
  );
}
