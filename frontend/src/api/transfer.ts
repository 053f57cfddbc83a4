/**
 * Uploads and downloads with progress.
 *
 * `fetch` cannot report upload progress, so uploads use XMLHttpRequest; downloads stream the body through a reader
 * and count bytes against `Content-Length`. Both URLs are built from the generated schema's paths.
 */
import { authHeaders } from "./auth";
import { ApiError, toApiError } from "./errors";
import { apiPath } from "./client";
import type { ExperimentPublic } from "./types";

export interface TransferProgress {
  loaded: number;
  /** null when the other side did not say how big the file is. */
  total: number | null;
}

export type UploadTarget = "model" | "dataset";

export function uploadFile(
  experimentId: string,
  target: UploadTarget,
  file: File,
  onProgress: (progress: TransferProgress) => void,
  signal?: AbortSignal,
): Promise<ExperimentPublic> {
  const url =
    target === "model"
      ? apiPath("/api/experiments/{experiment_id}/upload", { experiment_id: experimentId })
      : apiPath("/api/experiments/{experiment_id}/dataset", { experiment_id: experimentId });
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    xhr.responseType = "text";
    xhr.upload.onprogress = (event) => onProgress({ loaded: event.loaded, total: event.lengthComputable ? event.total : null });
    xhr.onload = () => {
      let body: unknown = xhr.responseText;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // a proxy's HTML error page: messageFromBody falls back to the status
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body as ExperimentPublic);
      else reject(toApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(toApiError(0, null));
    xhr.onabort = () => reject(new DOMException("The upload was cancelled.", "AbortError"));
    signal?.addEventListener("abort", () => xhr.abort(), { once: true });
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

export interface DownloadedFile {
  blob: Blob;
  filename: string;
}

/** The file name from `Content-Disposition` (RFC 6266, including the UTF-8 `filename*` form). */
export function filenameFromDisposition(header: string | null, fallback: string): string {
  if (!header) return fallback;
  const star = /filename\*\s*=\s*(?:UTF-8|utf-8)''([^;]+)/.exec(header);
  if (star?.[1]) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      // fall through to the plain form
    }
  }
  const plain = /filename\s*=\s*"?([^";]+)"?/.exec(header);
  return plain?.[1]?.trim() || fallback;
}

export function artifactUrl(experimentId: string, technique: string, format: string | null): string {
  const path = apiPath("/api/experiments/{experiment_id}/runs/{technique}/download", {
    experiment_id: experimentId,
    technique,
  });
  return format ? `${path}?format=${encodeURIComponent(format)}` : path;
}

export async function downloadArtifact(
  experimentId: string,
  technique: string,
  format: string | null,
  onProgress: (progress: TransferProgress) => void,
  signal?: AbortSignal,
): Promise<DownloadedFile> {
  let response: Response;
  try {
    response = await fetch(artifactUrl(experimentId, technique, format), { signal, headers: authHeaders() });
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, toApiError(0, null).message);
  }
  if (!response.ok) {
    const body: unknown = await response.json().catch(() => null);
    throw toApiError(response.status, body);
  }
  const lengthHeader = response.headers.get("Content-Length");
  const total = lengthHeader ? Number(lengthHeader) : null;
  const chunks: BlobPart[] = [];
  let loaded = 0;
  const reader = response.body?.getReader();
  if (reader) {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      loaded += value.byteLength;
      onProgress({ loaded, total });
    }
  } else {
    const buffer = await response.arrayBuffer();
    chunks.push(buffer);
    loaded = buffer.byteLength;
    onProgress({ loaded, total });
  }
  if (total !== null && loaded !== total) {
    throw new ApiError(0, `The download stopped early (${loaded} of ${total} bytes). Try again.`);
  }
  const fallback = `${technique}${format ? `.${format}` : ""}`;
  return {
    blob: new Blob(chunks, { type: response.headers.get("Content-Type") ?? "application/octet-stream" }),
    filename: filenameFromDisposition(response.headers.get("Content-Disposition"), fallback),
  };
}

/** Hands a downloaded blob to the browser as a file save. */
export function saveBlob(file: DownloadedFile): void {
  const url = URL.createObjectURL(file.blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = file.filename;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
