// The console: sign-in, the project, and a hash router over the pages.
//
// Routes live in the fragment (#/pools/abc): it never reaches the server or its logs.

import { ApiError, api, session } from "./api.js";
import { copy, fill, fmt, h, field, pager, say, table } from "./dom.js";
import { keysPage } from "./keys.js";
import { poolPage, poolsPage } from "./pools.js";
import { rewardsPage } from "./rewards.js";
import { tracePage } from "./trace.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const flash = document.getElementById("flash");
let cleanup = null;

const ROUTES = [
  [/^#\/pools\/([^/]+)$/, poolPage],
  [/^#\/pools$/, poolsPage],
  [/^#\/rewards$/, rewardsPage],
  [/^#\/trace$/, tracePage],
  [/^#\/keys$/, keysPage],
  [/^#\/projects$/, projectsPage],
];

/** Show an error from any page in the alert region; a 401 means signing in again. */
export function showError(err) {
  if (err instanceof ApiError && err.status === 401) {
    session.signOut();
    render();
  }
  const message = err instanceof ApiError ? `${err.message} (${err.code})` : String(err.message || err);
  fill(flash, message);
  flash.hidden = false;
}

function clearFlash() {
  flash.hidden = true;
  fill(flash);
}

function header() {
  const project = session.project;
  const links = [["#/pools", "Pools"], ["#/rewards", "Rewards"], ["#/trace", "Trace"], ["#/keys", "Keys & webhooks"]];
  const here = location.hash.split("/").slice(0, 2).join("/");
  fill(nav, project ? links.map(([href, text]) => h("a", { href, "aria-current": here === href ? "page" : null }, text)) : []);
  const parts = [];
  if (project) parts.push(h("span", { class: "project" }, h("span", { class: "muted" }, "Project "), project.name || project.id));
  if (session.key) {
    parts.push(h("span", { class: "role" }, project?.role || ""));
    if (project?.role === "root") parts.push(h("a", { href: "#/projects" }, "Switch project"));
    parts.push(h("button", { type: "button", class: "link", onclick: signOut }, "Sign out"));
  }
  fill(who, parts);
}

function signOut() {
  session.signOut();
  go("#/");
}

let current = 0;

async function render() {
  current += 1;
  const token = current;
  if (cleanup) { cleanup(); cleanup = null; }
  clearFlash();
  header();
  if (!session.key) { signInPage(); return; }
  // Changing the hash renders again (hashchange): return and let that run.
  if (!session.project && location.hash !== "#/projects") { location.hash = "#/projects"; return; }
  if (session.project && !ROUTES.some(([pattern]) => pattern.test(location.hash))) {
    location.hash = "#/pools";
    return;
  }
  for (const [pattern, page] of ROUTES) {
    const match = location.hash.match(pattern);
    if (!match) continue;
    // A fresh root per render: a slower, older render writes into a detached node.
    const root = h("div", { class: "page" });
    fill(main, root);
    try {
      const done = await page(root, ...match.slice(1).map(decodeURIComponent));
      if (token === current) cleanup = done || null;
      else if (done) done();
    } catch (err) {
      if (token === current) showError(err);
    }
    return;
  }
}

/** Go to ``hash``, rendering even when it is the current one. */
export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

function signInPage() {
  const key = field("API key", "password", { autocomplete: "off", required: true, spellcheck: "false" },
    "The root key, or an admin key of one project. It stays in this tab only.");
  const msg = h("p", { class: "msg", role: "status" });
  const form = h("form", { class: "card narrow", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to codepool"),
    key.row,
    h("button", { type: "submit", class: "primary" }, "Sign in"), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = key.input.value.trim();
    try {
      const me = await api("GET", "/v1/whoami", { key: token });
      if (me.role === "pos") {
        say(msg, "error", "This is a point-of-sale key. The console needs an admin key or the root key.");
        return;
      }
      session.signIn(token);
      session.setProject(me.role === "admin" ? { id: me.project_id, name: me.project_id, role: "admin" } : null);
      go(me.role === "admin" ? "#/pools" : "#/projects");
    } catch (err) {
      say(msg, "error", err instanceof ApiError && err.status === 401 ? "That key is not valid." : err.message);
    }
  });
  fill(main, form);
  key.input.focus();
}

/** Root only: pick the project to work in, or create one. */
async function projectsPage(root) {
  const list = h("div");
  const load = async (skip = 0) => {
    const page = await api("GET", "/v1/projects", { query: { skip, count: 50 } });
    fill(list, table("~Projects", [
      ["Name", (p) => p.name],
      ["Id", (p) => h("code", {}, p.id)],
      ["Created", (p) => fmt.time(p.created_at)],
      ["", (p) => h("button", { type: "button", onclick: () => open(p) , "aria-label": `Open project ${p.name}` }, "Open")],
    ], page.data, "No project yet: create one below."), pager("Projects", page, load));
  };
  const open = (p) => {
    session.setProject({ id: p.id, name: p.name, role: "root" });
    go("#/pools");
  };

  const name = field("Project name", "text", { required: true, maxlength: 200 });
  const id = field("Project id (optional)", "text", { pattern: "[A-Za-z0-9_-]{1,64}" }, "Letters, digits, - and _. Chosen by the server when empty.");
  const msg = h("div", { class: "msg", role: "status" });
  const form = h("form", { class: "card", "aria-labelledby": "new-project" },
    h("h2", { id: "new-project" }, "Create a project"), name.row, id.row,
    h("button", { type: "submit", class: "primary" }, "Create project"), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = { name: name.input.value.trim() };
      if (id.input.value.trim()) body.id = id.input.value.trim();
      const p = await api("POST", "/v1/projects", { body });
      say(msg, "ok",
        h("p", {}, `Project ${p.name} created. Its secrets are shown this once: keep them now.`),
        secretRow("User-token secret", p.user_token_secret),
        secretRow("Webhook secret", p.webhook_secret),
        h("button", { type: "button", class: "primary", onclick: () => open(p) }, `Open ${p.name}`));
      form.reset();
      await load();
    } catch (err) {
      say(msg, "error", err.message);
    }
  });
  fill(root, h("h1", {}, "Projects"), list, form);
  await load();
}

/** A read-only secret with a copy button (shown once). */
export function secretRow(label, value) {
  const f = field(label, "text", { readonly: true, value, class: "secret", spellcheck: "false" });
  const button = h("button", { type: "button", "aria-label": `Copy ${label.toLowerCase()}` }, "Copy");
  button.addEventListener("click", () => copy(value, button));
  f.row.append(button);
  return f.row;
}

window.addEventListener("hashchange", render);
render();
