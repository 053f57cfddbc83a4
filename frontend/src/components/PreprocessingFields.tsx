/**
 * The model's input convention: size, channel order, value range and normalization (`edgeopt.preprocessing`).
 * "The model's own" sends nothing; the presets come from the catalog, so the list is the server's.
 */
import type { PreprocessingPreset } from "../api/catalog";
import type { PreprocessingInputs, SetupErrors } from "../lib/setupForm";
import { InfoTip } from "./InfoTip";

interface Props {
  idPrefix: string;
  presets: PreprocessingPreset[];
  values: PreprocessingInputs;
  errors: SetupErrors;
  onChange: (values: PreprocessingInputs) => void;
}

function FieldMessage({ id, message }: { id: string; message: string | undefined }) {
  return message ? (
    <p id={id} className="field-error">
      {message}
    </p>
  ) : null;
}

export function PreprocessingFields({ idPrefix, presets, values, errors, onChange }: Props) {
  const set = (patch: Partial<PreprocessingInputs>) => onChange({ ...values, ...patch });
  const custom = values.preset === "custom";
  const chosen = presets.find((p) => p.name === values.preset);
  return (
    <fieldset className="space-y-3" aria-label="Model input">
      <legend className="field-label flex items-center">
        Model input
        <InfoTip label="Model input">
          How the model was trained to see images. Every technique and the original model get the same conversion, so
          a wrong choice shows as a low original accuracy.
        </InfoTip>
      </legend>
      <div className="grid gap-3 sm:grid-cols-2">
        <div>
          <label htmlFor={`${idPrefix}-preset`} className="field-label">
            Normalization
          </label>
          <select
            id={`${idPrefix}-preset`}
            className="field-input"
            value={values.preset}
            onChange={(event) => set({ preset: event.target.value })}
          >
            <option value="model">The model's own (as uploaded or named)</option>
            {presets.map((preset) => (
              <option key={preset.name} value={preset.name}>
                {preset.title}
              </option>
            ))}
          </select>
          {chosen?.mean && chosen.std && (
            <p className="mt-1 text-xs text-slate-600">
              mean {chosen.mean.join(", ")} · std {chosen.std.join(", ")} (RGB, 0..1)
            </p>
          )}
        </div>
        <div>
          <label htmlFor={`${idPrefix}-size`} className="field-label">
            Input size (optional)
          </label>
          <input
            id={`${idPrefix}-size`}
            type="text"
            className="field-input"
            placeholder="the model's own, e.g. 224x224"
            value={values.inputSize}
            aria-invalid={Boolean(errors.inputSize)}
            aria-describedby={errors.inputSize ? `${idPrefix}-size-error` : undefined}
            onChange={(event) => set({ inputSize: event.target.value })}
          />
          <FieldMessage id={`${idPrefix}-size-error`} message={errors.inputSize} />
        </div>
        <div>
          <label htmlFor={`${idPrefix}-order`} className="field-label">
            Channel order
          </label>
          <select
            id={`${idPrefix}-order`}
            className="field-input"
            value={values.channelOrder}
            onChange={(event) => set({ channelOrder: event.target.value as PreprocessingInputs["channelOrder"] })}
          >
            <option value="rgb">RGB</option>
            <option value="bgr">BGR</option>
          </select>
        </div>
        <div>
          <label htmlFor={`${idPrefix}-range`} className="field-label">
            Pixel values
          </label>
          <select
            id={`${idPrefix}-range`}
            className="field-input"
            value={values.valueRange}
            onChange={(event) => set({ valueRange: event.target.value as PreprocessingInputs["valueRange"] })}
          >
            <option value="0-1">0 to 1</option>
            <option value="0-255">0 to 255</option>
          </select>
        </div>
        {custom && (
          <>
            <div>
              <label htmlFor={`${idPrefix}-mean`} className="field-label">
                Mean per channel
              </label>
              <input
                id={`${idPrefix}-mean`}
                type="text"
                className="field-input"
                placeholder="e.g. 0.5, 0.5, 0.5"
                value={values.mean}
                aria-invalid={Boolean(errors.mean)}
                aria-describedby={errors.mean ? `${idPrefix}-mean-error` : undefined}
                onChange={(event) => set({ mean: event.target.value })}
              />
              <FieldMessage id={`${idPrefix}-mean-error`} message={errors.mean} />
            </div>
            <div>
              <label htmlFor={`${idPrefix}-std`} className="field-label">
                Std per channel
              </label>
              <input
                id={`${idPrefix}-std`}
                type="text"
                className="field-input"
                placeholder="e.g. 0.25, 0.25, 0.25"
                value={values.std}
                aria-invalid={Boolean(errors.std)}
                aria-describedby={errors.std ? `${idPrefix}-std-error` : undefined}
                onChange={(event) => set({ std: event.target.value })}
              />
              <FieldMessage id={`${idPrefix}-std-error`} message={errors.std} />
            </div>
          </>
        )}
      </div>
    </fieldset>
  );
}
