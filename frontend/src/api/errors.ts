/**
 * Turns whatever the service answered into one sentence a user can act on.
 *
 * FastAPI answers `{"detail": "..."}` for our own errors and `{"detail": [{loc, msg}, ...]}` for request validation;
 * both must reach the user in plain words, never as "[object Object]" or a bare status code.
 */
export class ApiError extends Error {
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

interface ValidationItem {
  loc?: unknown[];
  msg?: string;
}

function isValidationList(value: unknown): value is ValidationItem[] {
  return Array.isArray(value) && value.every((item) => typeof item === "object" && item !== null);
}

function describeValidationItem(item: ValidationItem): string {
  const where = (item.loc ?? []).filter((part) => part !== "body" && part !== "query" && part !== "path").join(".");
  const msg = item.msg ?? "is invalid";
  return where ? `${where}: ${msg}` : msg;
}

/** The user-facing message carried by an error body, or a fallback naming the HTTP status. */
export function messageFromBody(status: number, body: unknown): string {
  if (typeof body === "object" && body !== null) {
    const record = body as Record<string, unknown>;
    const detail = record.detail ?? record.message ?? record.error;
    if (typeof detail === "string" && detail.trim()) return detail;
    if (isValidationList(detail) && detail.length > 0) return detail.map(describeValidationItem).join("; ");
    if (typeof detail === "object" && detail !== null) {
      const nested = (detail as Record<string, unknown>).message;
      if (typeof nested === "string") return nested;
    }
  }
  if (typeof body === "string" && body.trim() && body.length < 300) return body;
  if (status === 0) return "The EdgeOpt service could not be reached. Check that it is running and try again.";
  if (status === 404) return "Not found: it may have been deleted.";
  if (status >= 500) return `The service failed (HTTP ${status}). Try again; if it keeps failing, check the server log.`;
  return `The request was refused (HTTP ${status}).`;
}

export function toApiError(status: number, body: unknown): ApiError {
  return new ApiError(status, messageFromBody(status, body));
}

/** A readable message for anything thrown in a data-loading path. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof TypeError) return messageFromBody(0, null);
  if (error instanceof Error) return error.message;
  return String(error);
}
