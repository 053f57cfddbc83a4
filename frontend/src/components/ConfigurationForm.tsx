/**
 * Everything about the experiment except the model: framework, board, dataset, goal, limits and techniques.
 * Every choice comes from the catalog; errors appear under their field and are linked with aria-describedby.
 */
import { useId, type ReactNode } from "react";
import type { Catalog } from "../api/catalog";
import { FRAMEWORK_TITLES, supportsFramework } from "../api/catalog";
import { CONSTRAINT_HELP, CONSTRAINT_LABELS } from "../lib/glossary";
import {
  DATASET_ACCEPT,
  type ConstraintInputs,
  type SetupErrors,
  type SetupValues,
} from "../lib/setupForm";
import { InfoTip } from "./InfoTip";
import { PreprocessingFields } from "./PreprocessingFields";

interface ConfigurationFormProps {
  catalog: Catalog;
  values: SetupValues;
  errors: SetupErrors;
  onChange: (patch: Partial<SetupValues>) => void;
  disabled?: boolean;
}

function FieldError({ id, message }: { id: string; message: string | undefined }) {
  if (!message) return null;
  return (
    <p id={id} className="field-error">
      {message}
    </p>
  );
}

function Fieldset({ legend, children, tip }: { legend: string; children: ReactNode; tip?: ReactNode }) {
  return (
    <fieldset className="space-y-2">
      <legend className="field-label">
        {legend}
        {tip}
      </legend>
      {children}
    </fieldset>
  );
}

const CONSTRAINT_ORDER: (keyof ConstraintInputs)[] = ["min_accuracy", "max_accuracy_drop", "max_size_mb", "max_latency_ms"];
const CONSTRAINT_PLACEHOLDERS: Record<keyof ConstraintInputs, string> = {
  min_accuracy: "e.g. 90",
  max_accuracy_drop: "e.g. 2",
  max_size_mb: "e.g. 5",
  max_latency_ms: "e.g. 50",
};

export function ConstraintFields({
  values,
  errors,
  onChange,
  idPrefix,
}: {
  values: ConstraintInputs;
  errors: Partial<Record<keyof ConstraintInputs, string>>;
  onChange: (values: ConstraintInputs) => void;
  idPrefix: string;
}) {
  return (
    <div className="grid gap-3 sm:grid-cols-2">
      {CONSTRAINT_ORDER.map((name) => {
        const inputId = `${idPrefix}-${name}`;
        const errorId = `${inputId}-error`;
        return (
          <div key={name}>
            <span className="flex items-center">
              <label htmlFor={inputId} className="field-label">
                {CONSTRAINT_LABELS[name]}
              </label>
              <InfoTip label={CONSTRAINT_LABELS[name]}>{CONSTRAINT_HELP[name]}</InfoTip>
            </span>
            <input
              id={inputId}
              type="text"
              inputMode="decimal"
              className="field-input"
              placeholder={CONSTRAINT_PLACEHOLDERS[name]}
              value={values[name]}
              aria-invalid={Boolean(errors[name])}
              aria-describedby={errors[name] ? errorId : undefined}
              onChange={(event) => onChange({ ...values, [name]: event.target.value })}
            />
            <FieldError id={errorId} message={errors[name]} />
          </div>
        );
      })}
    </div>
  );
}

export function ConfigurationForm({ catalog, values, errors, onChange, disabled }: ConfigurationFormProps) {
  const id = useId();
  const techniques = catalog.techniques.filter((t) => supportsFramework(t, values.framework));
  const allChosen = techniques.every((t) => values.techniques.includes(t.name));
  const toggleTechnique = (name: string, on: boolean) =>
    onChange({ techniques: on ? [...values.techniques, name] : values.techniques.filter((t) => t !== name) });

  return (
    <fieldset className="card space-y-6" disabled={disabled}>
      <legend className="h-section px-1">Configuration</legend>

      <div>
        <label htmlFor={`${id}-name`} className="field-label">
          Experiment name (optional)
        </label>
        <input
          id={`${id}-name`}
          className="field-input"
          value={values.name}
          maxLength={200}
          aria-invalid={Boolean(errors.name)}
          aria-describedby={errors.name ? `${id}-name-error` : undefined}
          onChange={(event) => onChange({ name: event.target.value })}
        />
        <FieldError id={`${id}-name-error`} message={errors.name} />
      </div>

      <Fieldset legend="Framework">
        <div className="flex flex-wrap gap-4">
          {catalog.frameworks.map((framework) => (
            <label key={framework} className="inline-flex items-center gap-2 text-sm">
              <input
                type="radio"
                name={`${id}-framework`}
                value={framework}
                checked={values.framework === framework}
                onChange={() => onChange({ framework })}
              />
              {FRAMEWORK_TITLES[framework] ?? framework}
            </label>
          ))}
        </div>
        <FieldError id={`${id}-framework-error`} message={errors.framework} />
      </Fieldset>

      <Fieldset legend="Target board">
        <div className="grid gap-2 sm:grid-cols-3">
          {catalog.devices.map((device) => (
            <label
              key={device.name}
              className={`flex cursor-pointer items-start gap-2 rounded-md border p-3 text-sm ${
                values.device === device.name ? "border-sky-700 bg-sky-50" : "border-slate-300"
              }`}
            >
              <input
                type="radio"
                name={`${id}-device`}
                value={device.name}
                checked={values.device === device.name}
                onChange={() => onChange({ device: device.name })}
                className="mt-1"
              />
              <span>
                <span className="block font-medium">{device.title}</span>
                <span className="block text-xs text-slate-600">{device.summary}</span>
              </span>
            </label>
          ))}
        </div>
        <FieldError id={`${id}-device-error`} message={errors.device} />
      </Fieldset>

      <Fieldset legend="Dataset">
        <div className="flex flex-wrap gap-4">
          <label className="inline-flex items-center gap-2 text-sm">
            <input
              type="radio"
              name={`${id}-dataset-mode`}
              checked={values.datasetMode === "preset"}
              onChange={() => onChange({ datasetMode: "preset" })}
            />
            A preset dataset
          </label>
          <label className="inline-flex items-center gap-2 text-sm">
            <input
              type="radio"
              name={`${id}-dataset-mode`}
              checked={values.datasetMode === "custom"}
              onChange={() => onChange({ datasetMode: "custom" })}
            />
            My own archive
          </label>
        </div>
        {values.datasetMode === "preset" ? (
          <div>
            <label htmlFor={`${id}-dataset`} className="field-label">
              Preset dataset
            </label>
            <select
              id={`${id}-dataset`}
              className="field-input"
              value={values.dataset}
              aria-invalid={Boolean(errors.dataset)}
              aria-describedby={`${id}-dataset-help${errors.dataset ? ` ${id}-dataset-error` : ""}`}
              onChange={(event) => onChange({ dataset: event.target.value })}
            >
              {catalog.datasets.map((dataset) => (
                <option key={dataset.name} value={dataset.name}>
                  {dataset.title}
                  {dataset.always_available ? "" : " (needs its files on the server)"}
                </option>
              ))}
            </select>
            <p id={`${id}-dataset-help`} className="mt-1 text-xs text-slate-600">
              {catalog.datasets.find((d) => d.name === values.dataset)?.summary}
            </p>
            <FieldError id={`${id}-dataset-error`} message={errors.dataset} />
          </div>
        ) : (
          <div>
            <label htmlFor={`${id}-dataset-file`} className="field-label">
              Dataset archive (.npz or .zip)
            </label>
            <input
              id={`${id}-dataset-file`}
              type="file"
              accept={DATASET_ACCEPT}
              className="mt-1 block w-full text-sm file:mr-3 file:rounded-md file:border-0 file:bg-slate-700 file:px-3 file:py-2 file:text-white"
              aria-invalid={Boolean(errors.datasetFile)}
              aria-describedby={errors.datasetFile ? `${id}-dataset-file-error` : undefined}
              onChange={(event) => onChange({ datasetFile: event.target.files?.[0] ?? null })}
            />
            <FieldError id={`${id}-dataset-file-error`} message={errors.datasetFile} />
          </div>
        )}
      </Fieldset>

      <div>
        <label htmlFor={`${id}-goal`} className="field-label">
          Goal
        </label>
        <select
          id={`${id}-goal`}
          className="field-input"
          value={values.goal}
          aria-describedby={`${id}-goal-help`}
          onChange={(event) => onChange({ goal: event.target.value })}
        >
          {catalog.goals.map((goal) => (
            <option key={goal.name} value={goal.name}>
              {goal.title}
            </option>
          ))}
        </select>
        <p id={`${id}-goal-help`} className="mt-1 text-xs text-slate-600">
          {catalog.goals.find((g) => g.name === values.goal)?.summary}
        </p>
        <FieldError id={`${id}-goal-error`} message={errors.goal} />
      </div>

      <Fieldset legend="Limits (optional)">
        <p className="text-xs text-slate-600">Leave a field blank for no limit.</p>
        <ConstraintFields
          idPrefix={`${id}-c`}
          values={values.constraints}
          errors={errors}
          onChange={(constraints) => onChange({ constraints })}
        />
      </Fieldset>

      <Fieldset legend="Techniques to run">
        <div className="flex flex-wrap gap-2">
          <button
            type="button"
            className="btn-secondary"
            onClick={() =>
              onChange({ techniques: allChosen ? [] : techniques.map((t) => t.name) })
            }
          >
            {allChosen ? "Clear all" : "Select all"}
          </button>
        </div>
        <ul className="grid gap-2 sm:grid-cols-2">
          {techniques.map((technique) => (
            <li key={technique.name} className="flex items-start gap-2 text-sm">
              <input
                id={`${id}-t-${technique.name}`}
                type="checkbox"
                className="mt-1"
                checked={values.techniques.includes(technique.name)}
                onChange={(event) => toggleTechnique(technique.name, event.target.checked)}
                aria-describedby={errors.techniques ? `${id}-techniques-error` : undefined}
              />
              <span className="flex items-center">
                <label htmlFor={`${id}-t-${technique.name}`}>{technique.title}</label>
                <InfoTip label={technique.title}>{technique.summary}</InfoTip>
              </span>
            </li>
          ))}
        </ul>
        <FieldError id={`${id}-techniques-error`} message={errors.techniques} />
      </Fieldset>

      <PreprocessingFields
        idPrefix={`${id}-pre`}
        presets={catalog.preprocessing_presets}
        values={values.preprocessing}
        errors={errors}
        onChange={(preprocessing) => onChange({ preprocessing })}
      />

      <div className="max-w-xs">
        <label htmlFor={`${id}-epochs`} className="field-label">
          Fine-tuning epochs (optional)
        </label>
        <input
          id={`${id}-epochs`}
          type="text"
          inputMode="numeric"
          className="field-input"
          placeholder="technique defaults"
          value={values.epochs}
          aria-invalid={Boolean(errors.epochs)}
          aria-describedby={`${id}-epochs-help${errors.epochs ? ` ${id}-epochs-error` : ""}`}
          onChange={(event) => onChange({ epochs: event.target.value })}
        />
        <p id={`${id}-epochs-help`} className="mt-1 text-xs text-slate-600">
          Fewer epochs finish sooner; 0 to {catalog.limits.max_epochs}.
        </p>
        <FieldError id={`${id}-epochs-error`} message={errors.epochs} />
      </div>

      <div className="max-w-xs">
        <label htmlFor={`${id}-budget`} className="field-label">
          Search time, minutes (optional)
        </label>
        <input
          id={`${id}-budget`}
          type="text"
          inputMode="decimal"
          className="field-input"
          placeholder="about the techniques' own time"
          value={values.timeBudgetMin}
          aria-invalid={Boolean(errors.timeBudgetMin)}
          aria-describedby={`${id}-budget-help${errors.timeBudgetMin ? ` ${id}-budget-error` : ""}`}
          onChange={(event) => onChange({ timeBudgetMin: event.target.value })}
        />
        <p id={`${id}-budget-help`} className="mt-1 text-xs text-slate-600">
          Pruning, distillation and INT4 search for the strongest setting that keeps your accuracy limit (1 point when
          none is set). This bounds the time all those searches take together.
        </p>
        <FieldError id={`${id}-budget-error`} message={errors.timeBudgetMin} />
      </div>
    </fieldset>
  );
}
