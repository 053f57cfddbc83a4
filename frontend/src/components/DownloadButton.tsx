/**
 * Downloads one result's file with a progress bar, in the format the user picks where the run offers several
 * (the deployable `.pte` / `.tflite`, and the `pt2` or `keras` model where the run keeps one).
 */
import { useId, useState } from "react";
import { errorMessage } from "../api/errors";
import { downloadArtifact, saveBlob, type TransferProgress } from "../api/transfer";
import { formatBytes } from "../lib/format";
import { ProgressBar } from "./ProgressBar";

interface DownloadButtonProps {
  experimentId: string;
  technique: string;
  /** The deployable artifact's file name; its extension is the default format. */
  artifact: string;
  formats: Record<string, string>;
  /** What the button's accessible name says is downloaded: "Post-training INT8". */
  title: string;
}

function extension(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot >= 0 ? name.slice(dot + 1) : name;
}

export function DownloadButton({ experimentId, technique, artifact, formats, title }: DownloadButtonProps) {
  const id = useId();
  const primary = extension(artifact);
  const choices = [primary, ...Object.keys(formats).filter((f) => f !== primary)];
  const [format, setFormat] = useState(primary);
  const [progress, setProgress] = useState<TransferProgress | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);

  const onDownload = async () => {
    setError(null);
    setDone(null);
    setProgress({ loaded: 0, total: null });
    try {
      const file = await downloadArtifact(experimentId, technique, format === primary ? null : format, setProgress);
      saveBlob(file);
      setDone(`${file.filename} (${formatBytes(file.blob.size)})`);
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setProgress(null);
    }
  };

  const percent = progress?.total ? (100 * progress.loaded) / progress.total : null;
  return (
    <div className="flex flex-col gap-1">
      <div className="flex items-center gap-1 whitespace-nowrap">
        {choices.length > 1 && (
          <>
            <label htmlFor={`${id}-format`} className="sr-only">
              Format for {title}
            </label>
            <select
              id={`${id}-format`}
              className="rounded-md border border-slate-300 bg-white px-1 py-1 text-xs"
              value={format}
              onChange={(event) => setFormat(event.target.value)}
            >
              {choices.map((choice) => (
                <option key={choice} value={choice}>
                  .{choice}
                </option>
              ))}
            </select>
          </>
        )}
        <button
          type="button"
          className="btn-secondary"
          onClick={onDownload}
          disabled={progress !== null}
          aria-label={`Download .${format} of ${title}`}
        >
          {/* With a format menu beside it the button need not repeat the format: the table then fits 1280 px. */}
          {progress ? "Downloading…" : choices.length > 1 ? "Download" : `Download .${format}`}
        </button>
      </div>
      {progress && (
        <div className="space-y-0.5">
          <ProgressBar label={`Download of ${title}`} percent={percent} size="sm" />
          <span className="text-xs text-slate-600">
            {formatBytes(progress.loaded)}
            {progress.total ? ` of ${formatBytes(progress.total)}` : ""}
          </span>
        </div>
      )}
      {done && (
        <span role="status" className="text-xs text-emerald-800">
          Saved {done}
        </span>
      )}
      {error && (
        <span role="alert" className="text-xs text-red-700">
          {error}
        </span>
      )}
    </div>
  );
}
