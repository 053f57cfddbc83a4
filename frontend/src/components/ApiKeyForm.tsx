/** Shown when the service answers 401: this EdgeOpt is protected by an API key, and the page asks for it once. */
import { useId, useState, type FormEvent } from "react";
import { setApiKey } from "../api/auth";

export function ApiKeyForm({ message, onSaved }: { message: string; onSaved: () => void }) {
  const id = useId();
  const [key, setKey] = useState("");
  const [error, setError] = useState<string | null>(null);
  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    if (!key.trim()) {
      setError("Enter the API key the EdgeOpt administrator gave you.");
      return;
    }
    setApiKey(key.trim());
    onSaved();
  };
  return (
    <form className="card max-w-md space-y-3" onSubmit={onSubmit} noValidate>
      <h1 className="h-section">This EdgeOpt needs an API key</h1>
      <p className="text-sm text-slate-700">{message}</p>
      <div>
        <label htmlFor={`${id}-key`} className="field-label">
          API key
        </label>
        <input
          id={`${id}-key`}
          type="password"
          autoComplete="current-password"
          className="field-input"
          value={key}
          aria-invalid={Boolean(error)}
          aria-describedby={error ? `${id}-error` : undefined}
          onChange={(event) => setKey(event.target.value)}
        />
        {error && (
          <p id={`${id}-error`} className="field-error">
            {error}
          </p>
        )}
      </div>
      <button type="submit" className="btn-primary">
        Continue
      </button>
    </form>
  );
}
