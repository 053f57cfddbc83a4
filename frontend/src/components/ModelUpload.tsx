/**
 * Where the model comes from: a file (drag and drop or the file picker, with upload progress) or a pretrained
 * architecture from the catalog. The upload itself happens on "Start optimization"; this shows its progress and
 * the server's verdict on the file.
 */
import { useId, useState, type DragEvent } from "react";
import type { ArchitectureInfo } from "../api/catalog";
import type { TransferProgress } from "../api/transfer";
import { formatBytes } from "../lib/format";
import { MODEL_ACCEPT, type ModelSource } from "../lib/setupForm";
import { ProgressBar } from "./ProgressBar";

interface ModelUploadProps {
  source: ModelSource;
  onSourceChange: (source: ModelSource) => void;
  file: File | null;
  onFileChange: (file: File | null) => void;
  arch: string;
  onArchChange: (arch: string) => void;
  architectures: ArchitectureInfo[];
  fileError?: string;
  archError?: string;
  /** The server refused the file: its message, in its words. */
  serverError?: string | null;
  progress: TransferProgress | null;
  disabled?: boolean;
}

export function ModelUpload(props: ModelUploadProps) {
  const id = useId();
  const [dragging, setDragging] = useState(false);
  const fileErrorId = `${id}-file-error`;
  const serverErrorId = `${id}-server-error`;
  const describedBy = [props.fileError ? fileErrorId : null, props.serverError ? serverErrorId : null]
    .filter(Boolean)
    .join(" ");

  const onDrop = (event: DragEvent<HTMLDivElement>) => {
    event.preventDefault();
    setDragging(false);
    if (props.disabled) return;
    const dropped = event.dataTransfer.files[0];
    if (dropped) props.onFileChange(dropped);
  };

  const percent =
    props.progress && props.progress.total ? (100 * props.progress.loaded) / props.progress.total : props.progress ? null : 0;

  return (
    <fieldset className="card space-y-4" disabled={props.disabled}>
      <legend className="h-section px-1">Model</legend>
      <div role="radiogroup" aria-label="Model source" className="flex flex-wrap gap-4">
        <label className="inline-flex items-center gap-2 text-sm">
          <input
            type="radio"
            name={`${id}-source`}
            value="upload"
            checked={props.source === "upload"}
            onChange={() => props.onSourceChange("upload")}
          />
          Upload a trained model
        </label>
        <label className="inline-flex items-center gap-2 text-sm">
          <input
            type="radio"
            name={`${id}-source`}
            value="architecture"
            checked={props.source === "architecture"}
            onChange={() => props.onSourceChange("architecture")}
          />
          Use a pretrained architecture
        </label>
      </div>

      {props.source === "upload" ? (
        <div
          onDragOver={(event) => {
            event.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
          data-testid="model-dropzone"
          className={`rounded-lg border-2 border-dashed p-4 text-sm transition-colors ${
            dragging ? "border-sky-600 bg-sky-50" : props.fileError || props.serverError ? "border-red-400" : "border-slate-300"
          }`}
        >
          <label htmlFor={`${id}-file`} className="field-label">
            Model file
          </label>
          <p className="mt-1 text-slate-600">
            Drop the file here or choose it: a PyTorch <code>.pt2</code> / <code>.pt</code>, or a Keras{" "}
            <code>.keras</code> / <code>.h5</code> (a SavedModel as <code>.zip</code>).
          </p>
          <input
            id={`${id}-file`}
            type="file"
            accept={MODEL_ACCEPT}
            aria-invalid={Boolean(props.fileError || props.serverError)}
            aria-describedby={describedBy || undefined}
            onChange={(event) => props.onFileChange(event.target.files?.[0] ?? null)}
            className="mt-2 block w-full text-sm file:mr-3 file:rounded-md file:border-0 file:bg-sky-800 file:px-3 file:py-2 file:text-sm file:font-semibold file:text-white hover:file:bg-sky-900"
          />
          {props.file && (
            <p className="mt-2 text-slate-700">
              Selected: <span className="font-medium">{props.file.name}</span> ({formatBytes(props.file.size)})
            </p>
          )}
          {props.progress && (
            <div className="mt-3 space-y-1">
              <ProgressBar label="Model upload" percent={percent} size="sm" />
              <p className="text-xs text-slate-600" aria-live="polite">
                Uploading {formatBytes(props.progress.loaded)}
                {props.progress.total ? ` of ${formatBytes(props.progress.total)}` : ""}
              </p>
            </div>
          )}
          {props.fileError && (
            <p id={fileErrorId} className="field-error">
              {props.fileError}
            </p>
          )}
          {props.serverError && (
            <p id={serverErrorId} role="alert" className="mt-2 rounded-md bg-red-50 p-2 text-sm text-red-800">
              The file was refused: {props.serverError}
            </p>
          )}
        </div>
      ) : (
        <div>
          <label htmlFor={`${id}-arch`} className="field-label">
            Architecture
          </label>
          <select
            id={`${id}-arch`}
            className="field-input"
            value={props.arch}
            aria-invalid={Boolean(props.archError)}
            aria-describedby={props.archError ? `${id}-arch-error` : `${id}-arch-help`}
            onChange={(event) => props.onArchChange(event.target.value)}
          >
            {props.architectures.map((arch) => (
              <option key={arch.name} value={arch.name}>
                {arch.title} ({arch.default_input.slice(0, 2).join("×")})
              </option>
            ))}
          </select>
          <p id={`${id}-arch-help`} className="mt-1 text-xs text-slate-600">
            Uses the ImageNet weights from the server's local cache; the server says so if they are missing.
          </p>
          {props.archError && (
            <p id={`${id}-arch-error`} className="field-error">
              {props.archError}
            </p>
          )}
        </div>
      )}
    </fieldset>
  );
}
