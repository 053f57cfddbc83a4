/**
 * The optional API key (EDGEOPT_API_KEY on the service). The service leaves the web app's files open and asks for
 * the key on /api (header X-API-Key) and /ws (?api_key=); the page asks the user once and keeps it for the tab.
 */
const STORAGE_KEY = "edgeopt.apiKey";
export const API_KEY_HEADER = "X-API-Key";
export const API_KEY_QUERY = "api_key";

export function getApiKey(): string | null {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function setApiKey(key: string | null): void {
  try {
    if (key) sessionStorage.setItem(STORAGE_KEY, key);
    else sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: the key lasts until the page reloads, which then asks again
  }
}

export function authHeaders(): Record<string, string> {
  const key = getApiKey();
  return key ? { [API_KEY_HEADER]: key } : {};
}
