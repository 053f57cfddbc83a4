// The e2e harness: a real `edgeopt serve` on a free port with its own storage, the built web app in front of it,
// and Chromium driven by playwright-core. Everything here is real; nothing in the backend is mocked.
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, existsSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const FRONTEND = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = resolve(FRONTEND, "..");
export const OUT_DIR = join(FRONTEND, "test-results", "e2e");
export const SCREENSHOTS = join(OUT_DIR, "screenshots");
export const EDGEOPT = process.env.EDGEOPT_BIN ?? join(REPO, ".venv", "bin", "edgeopt");
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** A failure caused by a part of the backend that is not there yet: reported as such, and still a failure. */
export class BackendMissing extends Error {
  constructor(message) {
    super(`backend endpoint missing: ${message}`);
    this.name = "BackendMissing";
  }
}

export function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForHttp(url, timeoutMs, processInfo) {
  const deadline = Date.now() + timeoutMs;
  let lastError = null;
  while (Date.now() < deadline) {
    if (processInfo?.exited) throw new Error(`${processInfo.name} exited early:\n${processInfo.tail()}`);
    try {
      const response = await fetch(url);
      if (response.ok) return;
      lastError = new Error(`HTTP ${response.status}`);
    } catch (error) {
      lastError = error;
    }
    await sleep(250);
  }
  throw new Error(`${url} did not answer within ${timeoutMs} ms: ${lastError}\n${processInfo?.tail() ?? ""}`);
}

/** Starts a child process in its own process group, keeping the tail of its output for error messages. */
function startProcess(name, command, args, options) {
  const child = spawn(command, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const lines = [];
  const keep = (chunk) => {
    lines.push(...chunk.toString().split("\n"));
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const info = {
    name,
    child,
    exited: false,
    tail: (n = 40) => lines.slice(-n).join("\n"),
    stop: async () => {
      if (info.exited) return;
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        return;
      }
      for (let i = 0; i < 40 && !info.exited; i += 1) await sleep(250);
      if (!info.exited) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    },
  };
  child.on("exit", () => {
    info.exited = true;
  });
  return info;
}

/**
 * The service under test. `edgeopt serve` serves the built app itself when it finds it; when it does not (its
 * static folder is elsewhere), `vite preview` serves frontend/dist and forwards /api and /ws to the service, so the
 * browser still sees one origin, as in production.
 */
export async function startStack() {
  if (!existsSync(EDGEOPT)) throw new Error(`${EDGEOPT} not found: run \`make install\` first`);
  if (!existsSync(join(FRONTEND, "dist", "index.html"))) throw new Error("frontend/dist is missing: run `npm run build` first");
  const storage = mkdtempSync(join(tmpdir(), "edgeopt-e2e-"));
  const apiPort = await freePort();
  const env = {
    ...process.env,
    EDGEOPT_STORAGE_DIR: join(storage, "storage"),
    EDGEOPT_DATA_DIR: process.env.EDGEOPT_DATA_DIR ?? join(storage, "data"),
    TF_CPP_MIN_LOG_LEVEL: "2",
    TF_USE_LEGACY_KERAS: "1",
  };
  delete env.EDGEOPT_DATABASE_URL; // SQLite in the temp storage, never a developer's database
  delete env.EDGEOPT_API_KEY;
  const backend = startProcess("edgeopt serve", EDGEOPT, ["serve", "--host", "127.0.0.1", "--port", String(apiPort)], {
    cwd: REPO,
    env,
  });
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  let preview = null;
  const cleanUp = async () => {
    await preview?.stop();
    await backend.stop();
    rmSync(storage, { recursive: true, force: true });
  };
  let appUrl = apiUrl;
  let sameBuild = false;
  try {
    await waitForHttp(`${apiUrl}/api/health`, 90_000, backend);
    const home = await fetch(`${apiUrl}/`).then((r) => (r.ok ? r.text() : ""), () => "");
    const servedBuild = readFileSync(join(FRONTEND, "dist", "index.html"), "utf8");
    sameBuild = home.includes('id="root"') && home === servedBuild;
    if (!sameBuild) {
      const previewPort = await freePort();
      const vite = join(FRONTEND, "node_modules", "vite", "bin", "vite.js");
      preview = startProcess(
        "vite preview",
        process.execPath,
        [vite, "preview", "--host", "127.0.0.1", "--port", String(previewPort), "--strictPort", "--bypass-lock"],
        { cwd: FRONTEND, env: { ...process.env, EDGEOPT_BACKEND: apiUrl } },
      );
      appUrl = `http://127.0.0.1:${previewPort}`;
      await waitForHttp(`${appUrl}/`, 30_000, preview);
    }
  } catch (error) {
    await cleanUp();
    throw error;
  }
  return {
    apiUrl,
    appUrl,
    servedBy: sameBuild ? "edgeopt serve" : "vite preview (proxying /api and /ws to edgeopt serve)",
    storage,
    env,
    backend,
    /** A folder inside the run's temp storage, removed with it. */
    scratch(name) {
      const dir = join(storage, name);
      mkdirSync(dir, { recursive: true });
      return dir;
    },
    stop: cleanUp,
  };
}

/** Runs an `edgeopt` subcommand to completion (e.g. demo-model); a failure names the command and its output. */
export function runEdgeopt(args, env, timeoutMs = 900_000) {
  return new Promise((resolveRun, reject) => {
    const child = spawn(EDGEOPT, args, { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code === 0) resolveRun(output);
      else reject(new Error(`edgeopt ${args.join(" ")} exited ${code}:\n${output.slice(-2000)}`));
    });
  });
}

/** The OpenAPI paths the running service offers, to tell "not built yet" apart from "broken". */
export async function servicePaths(apiUrl) {
  const spec = await fetch(`${apiUrl}/openapi.json`).then((r) => r.json());
  return new Set(Object.keys(spec.paths ?? {}));
}

export async function requirePaths(apiUrl, needed) {
  const paths = await servicePaths(apiUrl);
  const missing = needed.filter((p) => !paths.has(p));
  if (missing.length) throw new BackendMissing(missing.join(", "));
}

/** axe-core injected into the page; returns the violations of serious or critical impact. */
const AXE_SOURCE = readFileSync(join(FRONTEND, "node_modules", "axe-core", "axe.min.js"), "utf8");
export async function seriousAxeViolations(page) {
  await page.addScriptTag({ content: AXE_SOURCE });
  const results = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await window.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    }));
  });
  return results.filter((v) => v.impact === "serious" || v.impact === "critical");
}

export function ensureDirs() {
  mkdirSync(SCREENSHOTS, { recursive: true });
}
