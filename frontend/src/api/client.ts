/**
 * The one place that talks HTTP to the service. Components call these functions; every path is a key of the
 * generated `paths` type, so a renamed or removed endpoint is a TypeScript error, not a 404 at run time.
 */
import createClient from "openapi-fetch";
import type { paths } from "./schema.gen";
import { authHeaders } from "./auth";
import { ApiError, toApiError } from "./errors";
import type { Catalog } from "./catalog";
import { parseCatalog } from "./catalog";
import type {
  Constraints,
  ExperimentCreate,
  ExperimentPublic,
  ExperimentsPublic,
  Recommendation,
  Report,
} from "./types";

export const api = createClient<paths>({ baseUrl: "" });
api.use({
  onRequest({ request }) {
    for (const [name, value] of Object.entries(authHeaders())) request.headers.set(name, value);
    return request;
  },
});

interface FetchResult<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** Unwraps an openapi-fetch result: the data, or an ApiError carrying the server's own words. */
async function unwrap<T>(call: Promise<FetchResult<T>>): Promise<T> {
  let result: FetchResult<T>;
  try {
    result = await call;
  } catch (error) {
    if (error instanceof DOMException && error.name === "AbortError") throw error;
    throw new ApiError(0, toApiError(0, null).message);
  }
  if (!result.response.ok || result.error !== undefined) throw toApiError(result.response.status, result.error);
  return result.data as T;
}

export async function getCatalog(signal?: AbortSignal): Promise<Catalog> {
  return parseCatalog(await unwrap(api.GET("/api/catalog", { signal })));
}

export function listExperiments(signal?: AbortSignal): Promise<ExperimentsPublic> {
  return unwrap(api.GET("/api/experiments", { params: { query: { limit: 100 } }, signal }));
}

export function getExperiment(experimentId: string, signal?: AbortSignal): Promise<ExperimentPublic> {
  return unwrap(api.GET("/api/experiments/{experiment_id}", { params: { path: { experiment_id: experimentId } }, signal }));
}

export async function deleteExperiment(experimentId: string): Promise<void> {
  await unwrap(api.DELETE("/api/experiments/{experiment_id}", { params: { path: { experiment_id: experimentId } } }));
}

export function createExperiment(body: ExperimentCreate): Promise<ExperimentPublic> {
  return unwrap(api.POST("/api/experiments", { body }));
}

export function startExperiment(experimentId: string): Promise<ExperimentPublic> {
  return unwrap(
    api.POST("/api/experiments/{experiment_id}/start", { params: { path: { experiment_id: experimentId } } }),
  );
}

export function cancelExperiment(experimentId: string): Promise<ExperimentPublic> {
  return unwrap(
    api.POST("/api/experiments/{experiment_id}/cancel", { params: { path: { experiment_id: experimentId } } }),
  );
}

export function getResults(experimentId: string, signal?: AbortSignal): Promise<Report> {
  return unwrap(
    api.GET("/api/experiments/{experiment_id}/results", { params: { path: { experiment_id: experimentId } }, signal }),
  );
}

export function recomputeRecommendation(
  experimentId: string,
  goal: ExperimentCreate["goal"],
  constraints: Constraints,
): Promise<Recommendation> {
  return unwrap(
    api.POST("/api/experiments/{experiment_id}/recommendation", {
      params: { path: { experiment_id: experimentId } },
      body: { goal, constraints },
    }),
  );
}

/**
 * Fills a path template from the generated schema. Uploads and downloads need XMLHttpRequest / streaming fetch for
 * progress, which openapi-fetch does not expose, but their URLs still come from the schema's own paths.
 */
export function apiPath<P extends keyof paths>(template: P, params: Record<string, string>): string {
  return String(template).replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name} for ${String(template)}`);
    return encodeURIComponent(value);
  });
}
