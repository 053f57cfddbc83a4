import { Link } from "react-router";

export function NotFoundPage() {
  return (
    <section>
      <h1 className="h-page">Page not found</h1>
      <p className="mt-2 text-slate-700">
        There is nothing at this address. <Link className="text-sky-800 underline" to="/">Go to your experiments</Link>.
      </p>
    </section>
  );
}
