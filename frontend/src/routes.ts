/** The app's own page addresses, in one place. */
export const routes = {
  home: () => "/",
  setup: () => "/new",
  progress: (id: string) => `/experiments/${encodeURIComponent(id)}/progress`,
  results: (id: string) => `/experiments/${encodeURIComponent(id)}/results`,
};
