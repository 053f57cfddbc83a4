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
export function startProcess(name, command, args, options) {
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

/**
 * What a user would see as broken layout at the page's current width, as sentences (empty when none):
 * - the page, or any element outside a scroll area of its own, sticking out sideways;
 * - a button, link-button or select whose text is cut off or that a clipping box hides in part;
 * - a scroll area that needs sideways scrolling at desktop width (from 1024 px every column must fit), or that
 *   scrolls at phone width without keeping its table's first column (the row headers) in view;
 * - a table header cell taller than three lines of text;
 * - chart labels that overlap, or numeric axis ticks that are not evenly spaced on a 1-2-2.5-5 step.
 */
export async function layoutProblems(page) {
  return page.evaluate(() => {
    const problems = [];
    const vw = document.documentElement.clientWidth;
    const say = (el) => {
      const text = (el.getAttribute("aria-label") || el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 50);
      return `<${el.tagName.toLowerCase()}> "${text}"`;
    };
    const shown = (el) => {
      const style = getComputedStyle(el);
      const r = el.getBoundingClientRect();
      return style.visibility !== "hidden" && style.display !== "none" && r.width > 1 && r.height > 1;
    };
    const hiddenByClip = (el) => {
      for (let p = el; p && p !== document.body; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.clip !== "auto" && s.position === "absolute") return true; // sr-only
      }
      return false;
    };
    const scrollArea = (el) => {
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const ox = getComputedStyle(p).overflowX;
        if (ox === "auto" || ox === "scroll") return p;
      }
      return null;
    };
    const over = document.documentElement.scrollWidth - vw;
    if (over > 1) problems.push(`the page is ${over}px wider than the ${vw}px window`);

    const sticking = [];
    for (const el of document.body.querySelectorAll("*")) {
      if (!shown(el) || hiddenByClip(el) || el.closest("svg") && el.tagName !== "svg") continue;
      const r = el.getBoundingClientRect();
      if ((r.right > vw + 1 || r.left < -1) && !scrollArea(el)) sticking.push(el);
    }
    // Report the outermost offenders only: their children stick out with them.
    for (const el of sticking.filter((el) => !sticking.includes(el.parentElement)).slice(0, 5)) {
      const r = el.getBoundingClientRect();
      problems.push(`${say(el)} sticks out of the ${vw}px window (${Math.round(r.left)}..${Math.round(r.right)}px)`);
    }

    const controls = document.querySelectorAll("button, select, a.btn-primary, a.btn-secondary, a.btn-danger, [role=button]");
    for (const el of controls) {
      if (!shown(el) || hiddenByClip(el)) continue;
      if (el.tagName !== "SELECT" && el.scrollWidth > el.clientWidth + 1) {
        problems.push(`${say(el)} is cut off: its text needs ${el.scrollWidth}px, it has ${el.clientWidth}px`);
        continue;
      }
      const r = el.getBoundingClientRect();
      for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        const s = getComputedStyle(p);
        if (s.overflowX === "visible" && s.overflowY === "visible") continue;
        const box = p.getBoundingClientRect();
        const scrolls = s.overflowX === "auto" || s.overflowX === "scroll";
        if (!scrolls && (r.left < box.left - 1 || r.right > box.right + 1 || r.bottom > box.bottom + 1)) {
          problems.push(`${say(el)} is partly hidden by its container`);
        }
        break;
      }
    }

    for (const area of document.querySelectorAll("*")) {
      const ox = getComputedStyle(area).overflowX;
      if ((ox !== "auto" && ox !== "scroll") || !shown(area)) continue;
      const extra = area.scrollWidth - area.clientWidth;
      if (extra <= 1) continue;
      const name = area.getAttribute("aria-label") || say(area);
      if (vw >= 1024) {
        problems.push(`"${name}" needs sideways scrolling at ${vw}px (${extra}px hidden)`);
      } else {
        const rowHeader = area.querySelector("tbody th[scope=row], tbody td:first-child");
        if (rowHeader && getComputedStyle(rowHeader).position !== "sticky") {
          problems.push(`"${name}" scrolls sideways at ${vw}px but its first column does not stay in view`);
        }
      }
    }

    for (const th of document.querySelectorAll("thead th")) {
      if (!shown(th) || hiddenByClip(th)) continue;
      // Lines of the header's own text (a row is as tall as its tallest header, so the cell's box would not say).
      const range = document.createRange();
      range.selectNodeContents(th);
      const tops = [...range.getClientRects()].filter((r) => r.width > 2 && r.height > 2).map((r) => r.top);
      const lines = tops.sort((a, b) => a - b).filter((top, i) => i === 0 || top - tops[i - 1] > 4).length;
      if (lines > 3) problems.push(`the header ${say(th)} wraps to ${lines} lines`);
    }

    const boxesOverlap = (a, b) =>
      Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1;
    for (const chart of document.querySelectorAll("svg.recharts-surface")) {
      const labels = [...chart.querySelectorAll("text")].filter((t) => shown(t) && t.textContent.trim());
      const boxes = labels.map((t) => t.getBoundingClientRect());
      for (let i = 0; i < labels.length; i += 1) {
        for (let j = i + 1; j < labels.length; j += 1) {
          if (boxesOverlap(boxes[i], boxes[j])) {
            problems.push(`chart labels "${labels[i].textContent}" and "${labels[j].textContent}" overlap`);
          }
        }
      }
      for (const axis of chart.querySelectorAll(".recharts-cartesian-axis-ticks")) {
        const values = [...axis.querySelectorAll("text")].map((t) => Number(t.textContent.replace(/[^0-9.eE+-]/g, "")));
        if (values.length < 3 || values.some((v) => !Number.isFinite(v))) continue;
        const steps = values.slice(1).map((v, i) => Math.abs(v - values[i]));
        const step = steps[0];
        const even = steps.every((s) => Math.abs(s - step) <= step * 1e-6 + 1e-9);
        const mantissa = step / 10 ** Math.floor(Math.log10(step));
        const nice = [1, 2, 2.5, 5, 10].some((m) => Math.abs(mantissa - m) < 1e-6);
        if (!even || !nice) problems.push(`chart axis ticks ${values.join(", ")} are not evenly spaced on a round step`);
      }
    }
    return problems;
  });
}
