/** Another goal or other limits for the same runs: the recommendation is recomputed by the service, nothing re-runs. */
import { useId, useState, type FormEvent } from "react";
import type { NamedInfo } from "../api/catalog";
import type { Constraints } from "../api/types";
import { constraintsFromInputs, initialSetupValues, validateSetup, type ConstraintInputs } from "../lib/setupForm";
import { ConstraintFields } from "./ConfigurationForm";
import type { Catalog } from "../api/catalog";

interface GoalConstraintsEditorProps {
  catalog: Catalog;
  goals: NamedInfo[];
  initialGoal: string;
  initialConstraints: ConstraintInputs;
  busy: boolean;
  error: string | null;
  onSubmit: (goal: string, constraints: Constraints) => void;
}

type ConstraintErrors = Partial<Record<keyof ConstraintInputs, string>>;

/** Reuses the setup form's rules for the four limits, so both forms accept and refuse the same input. */
function constraintErrors(catalog: Catalog, inputs: ConstraintInputs): ConstraintErrors {
  const all = validateSetup({ ...initialSetupValues(catalog), source: "architecture", constraints: inputs }, catalog);
  const picked: ConstraintErrors = {};
  for (const key of ["min_accuracy", "max_accuracy_drop", "max_size_mb", "max_latency_ms"] as const) {
    if (all[key]) picked[key] = all[key];
  }
  return picked;
}

export function GoalConstraintsEditor(props: GoalConstraintsEditorProps) {
  const id = useId();
  const [goal, setGoal] = useState(props.initialGoal);
  const [inputs, setInputs] = useState<ConstraintInputs>(props.initialConstraints);
  const [errors, setErrors] = useState<ConstraintErrors>({});

  const onSubmit = (event: FormEvent) => {
    event.preventDefault();
    const found = constraintErrors(props.catalog, inputs);
    setErrors(found);
    if (Object.keys(found).length === 0) props.onSubmit(goal, constraintsFromInputs(inputs));
  };

  return (
    <form className="card space-y-4" onSubmit={onSubmit} noValidate aria-labelledby={`${id}-heading`}>
      <h2 id={`${id}-heading`} className="h-section">
        Change the goal or limits
      </h2>
      <p className="text-sm text-slate-600">The recommendation is recomputed from these results; nothing runs again.</p>
      <div>
        <label htmlFor={`${id}-goal`} className="field-label">
          Goal
        </label>
        <select id={`${id}-goal`} className="field-input" value={goal} onChange={(event) => setGoal(event.target.value)} aria-describedby={`${id}-goal-help`}>
          {props.goals.map((g) => (
            <option key={g.name} value={g.name}>
              {g.title}
            </option>
          ))}
        </select>
        <p id={`${id}-goal-help`} className="mt-1 text-xs text-slate-600">
          {props.goals.find((g) => g.name === goal)?.summary}
        </p>
      </div>
      <ConstraintFields idPrefix={`${id}-c`} values={inputs} errors={errors} onChange={(next) => {
        setInputs(next);
        if (Object.keys(errors).length) setErrors(constraintErrors(props.catalog, next));
      }} />
      {props.error && (
        <p role="alert" className="rounded-md bg-red-50 p-2 text-sm text-red-900">
          {props.error}
        </p>
      )}
      <button type="submit" className="btn-primary" disabled={props.busy} aria-busy={props.busy}>
        {props.busy ? "Recomputing…" : "Recompute recommendation"}
      </button>
    </form>
  );
}
