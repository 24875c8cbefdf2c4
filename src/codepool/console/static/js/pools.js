// Pools: the list, creating one, and a pool's own page (stock, chart, uploads, codes,
// settings, delete).

import { ApiError, api, download, projectPath, uploadCodes } from "./api.js";
import { go, showError } from "./app.js";
import { activityChart } from "./activity.js";
import {
  confirmAction, field, fill, fmt, fromLocalInput, h, pager, parseInts, parseList, say, stat,
  stockBar, table, toLocalInput,
} from "./dom.js";

const REFRESH_MS = 5000;

export async function poolsPage(root) {
  const summary = h("ul", { class: "stats", "aria-label": "All pools" });
  const list = h("div");
  const load = async (skip = 0) => {
    const [page, rewards] = await Promise.all([
      api("GET", projectPath("pools"), { query: { skip, count: 50 } }),
      rewardNames(),
    ]);
    // The list answers totals only; each pool's own answer has the split by status.
    const pools = await Promise.all(page.data.map((p) => api("GET", projectPath("pools", p.id))));
    const sum = (k) => pools.reduce((n, p) => n + p[k], 0);
    fill(summary, stat("Pools", page.matched), stat("Codes", sum("total")),
      stat("Available", sum("available"), "available"), stat("Assigned", sum("assigned"), "assigned"),
      stat("Redeemed", sum("redeemed"), "redeemed"));
    fill(list, table("~Pools", [
      ["Name", (p) => h("a", { href: `#/pools/${encodeURIComponent(p.id)}` }, p.name)],
      ["Total", (p) => fmt.int(p.total)],
      ["Available", (p) => fmt.int(p.available)],
      ["Assigned", (p) => fmt.int(p.assigned)],
      ["Redeemed", (p) => fmt.int(p.redeemed)],
      ["Stock", (p) => stockBar(p)],
      ["Used by", (p) => fmt.list(p.used_by.map(rewards))],
    ], pools, "No pool yet: create one below."), pager("Pools", page, load));
  };
  fill(root, h("h1", {}, "Pools"), summary, list, createPoolForm());
  await load();
}

/** Fields shared by "create" and "settings": name, alerts, notify, expiry. */
function poolFields(pool = null) {
  const f = {
    name: field("Name", "text", { required: true, maxlength: 200, value: pool?.name ?? "" }),
    thresholds: field("Low-stock thresholds", "text", { value: (pool?.low_stock_thresholds ?? []).join(", "), inputmode: "numeric" },
      "Alert when available falls to or below each of these counts, e.g. 1000, 100."),
    emptySoon: field("Empty-soon alerts (seconds)", "text", { value: (pool?.empty_soon_alerts ?? []).join(", "), inputmode: "numeric" },
      "Alert when, at the current rate, the pool runs dry within this many seconds, e.g. 3600."),
    emails: field("Notify emails", "text", { value: (pool?.notify?.emails ?? []).join(", ") }, "Comma-separated."),
    webhook: field("Notify webhook URL", "url", { value: pool?.notify?.webhook_url ?? "", placeholder: "https://…" }),
    expires: field("Expires at", "datetime-local", { value: toLocalInput(pool?.expires_at) }, "Empty: never expires."),
  };
  const body = () => {
    const out = {
      name: f.name.input.value.trim(),
      low_stock_thresholds: parseInts(f.thresholds.input.value, "Low-stock thresholds"),
      notify: { emails: parseList(f.emails.input.value), webhook_url: f.webhook.input.value.trim() || null },
      expires_at: fromLocalInput(f.expires.input.value),
    };
    // Sent only when set or already known to the server, so a server without the
    // empty-soon forecast still takes the rest.
    const emptySoon = parseInts(f.emptySoon.input.value, "Empty-soon alerts");
    if (emptySoon.length || (pool && "empty_soon_alerts" in pool)) out.empty_soon_alerts = emptySoon;
    return out;
  };
  return { rows: Object.values(f).map((x) => x.row), body };
}

function createPoolForm() {
  const fields = poolFields();
  const msg = h("div", { class: "msg", role: "status" });
  const form = h("form", { class: "card", "aria-labelledby": "new-pool" },
    h("h2", { id: "new-pool" }, "Create a pool"), h("div", { class: "grid" }, fields.rows),
    h("button", { type: "submit", class: "primary" }, "Create pool"), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const body = fields.body();
      if (body.expires_at === null) delete body.expires_at;
      const pool = await api("POST", projectPath("pools"), { body });
      go(`#/pools/${encodeURIComponent(pool.id)}`);
    } catch (err) {
      say(msg, "error", err.message);
    }
  });
  return form;
}

/** reward id -> its name (the id itself for one not found), from one list call. */
export async function rewardNames() {
  const page = await api("GET", projectPath("rewards"), { query: { count: 1000 } });
  const names = new Map(page.data.map((r) => [r.id, r.name]));
  return (id) => names.get(id) ?? id;
}

export async function poolPage(root, poolId) {
  let [pool, rewards] = await Promise.all([api("GET", projectPath("pools", poolId)), rewardNames()]);
  const title = h("h1", {}, pool.name);
  const summary = h("ul", { class: "stats", "aria-label": "Stock" });
  const bar = h("div");
  const facts = h("p", { class: "muted" });
  const showPool = () => {
    fill(title, pool.name);
    fill(summary, stat("Total", pool.total), stat("Available", pool.available, "available"),
      stat("Assigned", pool.assigned, "assigned"), stat("Redeemed", pool.redeemed, "redeemed"));
    fill(bar, stockBar(pool));
    fill(facts,
      "Id ", h("code", {}, pool.id),
      pool.low_stock_thresholds.length ? ` · low-stock alerts at ${fmt.list(pool.low_stock_thresholds.map(fmt.int))}` : " · no low-stock alert",
      " · expires ", pool.expires_at ? fmt.time(pool.expires_at) : "never",
      " · used by ", pool.used_by.length ? pool.used_by.map(rewards).join(", ") : "no reward");
  };
  const refreshPool = async () => {
    pool = await api("GET", projectPath("pools", poolId));
    showPool();
  };
  showPool();

  const chart = activityChart(poolId);
  const codes = codesSection(poolId);
  const onChange = async () => { await refreshPool(); await codes.load(); await chart.refresh(); };

  fill(root,
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/pools" }, "Pools"), " / ", pool.name),
    title, summary, bar, facts,
    chart.section,
    uploadSection(poolId, onChange),
    generateSection(poolId, onChange),
    codes.section,
    settingsSection(pool, async (updated) => { pool = updated; showPool(); }),
    deleteSection(pool, rewards));
  await Promise.all([codes.load(), chart.refresh()]);

  // Live while the page is open: the counts and the chart, every few seconds.
  const timer = setInterval(async () => {
    try {
      await refreshPool();
      await chart.refresh();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) showError(err);
    }
  }, REFRESH_MS);
  return () => { clearInterval(timer); chart.destroy(); };
}

function uploadSection(poolId, onChange) {
  const paste = field("Codes", "textarea", { rows: 5, spellcheck: "false", placeholder: "SAVE10, SAVE20\nSAVE30" },
    "Separated by commas and/or new lines. Blanks around a code are dropped.");
  const file = field("CSV or TXT file", "file", { accept: ".csv,.txt,text/csv,text/plain" },
    "Sent straight from disk, whatever its size. CSV: the first column, a first row \"code\" is a header.");
  const dupes = field("Duplicates", "select", { options: [["allow", "Allow: every line is one more code"], ["skip", "Skip codes already in the pool"]] });
  const progress = h("progress", { max: 100, value: 0, "aria-label": "Upload progress", hidden: true });
  const msg = h("div", { class: "msg", role: "status", "aria-live": "polite" });

  const send = async (body, contentType, buttons) => {
    buttons.forEach((b) => { b.disabled = true; });
    say(msg, "", "Uploading…");
    progress.hidden = !(body instanceof File);
    progress.value = 0;
    try {
      const answer = await uploadCodes(projectPath("pools", poolId, "codes"), body, contentType,
        { duplicates: dupes.input.value }, (loaded, total) => { progress.value = (100 * loaded) / total; });
      say(msg, "ok", `Added ${fmt.int(answer.added)}, skipped ${fmt.int(answer.skipped)}. `,
        `The pool now holds ${fmt.int(answer.total)} codes, ${fmt.int(answer.available)} available.`);
      return true;
    } catch (err) {
      showUploadError(msg, err);
      return false;
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
      await onChange().catch(showError);
    }
  };

  const pasteButton = h("button", { type: "submit", class: "primary" }, "Upload codes");
  const fileButton = h("button", { type: "submit", class: "primary" }, "Upload file");
  const pasteForm = h("form", { "aria-label": "Paste codes" }, paste.row, pasteButton);
  const fileForm = h("form", { "aria-label": "Upload a file" }, file.row, fileButton, progress);
  pasteForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await send(paste.input.value, "text/plain", [pasteButton, fileButton])) paste.input.value = "";
  });
  fileForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const chosen = file.input.files[0];
    if (!chosen) { say(msg, "error", "Choose a file first."); return; }
    const type = /\.csv$/i.test(chosen.name) || chosen.type === "text/csv" ? "text/csv" : "text/plain";
    if (await send(chosen, type, [pasteButton, fileButton])) file.input.value = "";
  });
  return h("section", { class: "card", "aria-labelledby": "add-codes" },
    h("h2", { id: "add-codes" }, "Add codes"),
    h("p", { class: "muted" }, "Upload or refill: codes are added to what the pool holds. All or nothing: one bad code and nothing is stored."),
    dupes.row, h("div", { class: "columns" }, pasteForm, fileForm), msg);
}

// codepool makes the codes: a pattern (# = one random character), a charset, an
// optional Luhn mod N check character (docs/generate.md).
function generateSection(poolId, onChange) {
  const pattern = field("Pattern", "text", { value: "SALE-####-####", required: true, spellcheck: "false", maxlength: 128 },
    "Each # is one random character; everything else is kept as written.");
  const count = field("How many", "number", { value: 1000, min: 1, max: 10000000, required: true });
  const charset = field("Charset", "select", { options: [
    ["unambiguous", "Unambiguous: 2-9 and A-Z without I, O"], ["alphanumeric", "0-9 and A-Z"],
    ["digits", "Digits"], ["letters", "Letters A-Z"]] });
  const check = field("Check character", "checkbox", {},
    "One more character (Luhn mod N), so a till can reject a mistyped code.");
  const button = h("button", { type: "submit", class: "primary" }, "Generate");
  const msg = h("div", { class: "msg", role: "status", "aria-live": "polite" });
  const form = h("form", { "aria-label": "Generate" }, pattern.row, count.row, charset.row, check.row, button);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    say(msg, "", "Generating…");
    try {
      const answer = await api("POST", projectPath("pools", poolId, "codes", "generate"), { body: {
        pattern: pattern.input.value, count: Number(count.input.value),
        charset: charset.input.value, check_character: check.input.checked } });
      say(msg, "ok", `Generated ${fmt.int(answer.added)} codes. `,
        `The pool now holds ${fmt.int(answer.total)} codes, ${fmt.int(answer.available)} available. `,
        `A random guess among the pattern's ${answer.space.toPrecision(3)} codes hits a live one with probability ${answer.guess_probability.toPrecision(2)}.`);
    } catch (err) {
      say(msg, "error", `Generation refused: ${err.message}`);
    } finally {
      button.disabled = false;
      await onChange().catch(showError);
    }
  });
  return h("section", { class: "card", "aria-labelledby": "generate-codes" },
    h("h2", { id: "generate-codes" }, "Generate codes"),
    h("p", { class: "muted" }, "New random codes, none equal to a code of the project. All or nothing."),
    form, msg);
}

function showUploadError(msg, err) {
  if (!(err instanceof ApiError) || err.code !== "invalid_codes") {
    say(msg, "error", `Upload refused: ${err.message}`);
    return;
  }
  const errors = err.details.errors || [];
  const count = err.details.error_count ?? errors.length;
  say(msg, "error",
    h("p", {}, h("strong", {}, `Upload refused: ${fmt.int(count)} invalid code${count === 1 ? "" : "s"}. Nothing was stored.`)),
    table("Invalid codes", [
      ["Line", (e) => (e.line === undefined ? "–" : String(e.line))],
      ["Entry", (e) => String(e.index + 1)],
      ["Code", (e) => h("code", {}, e.code)],
      ["Reason", (e) => e.reason.replaceAll("_", " ")],
    ], errors),
    count > errors.length ? h("p", { class: "muted" }, `The first ${errors.length} are listed.`) : null);
}

function codesSection(poolId) {
  const status = field("Status", "select", { options: [["", "All"], ["available", "Available"], ["assigned", "Assigned"], ["redeemed", "Redeemed"]] });
  const list = h("div");
  const msg = h("div", { class: "msg", role: "status" });
  let skip = 0;
  const load = async (from = skip) => {
    skip = from;
    const page = await api("GET", projectPath("pools", poolId, "codes"), { query: { status: status.input.value, skip, count: 20 } });
    fill(list, table("~Codes", [
      ["Code", (c) => h("code", {}, c.code)],
      ["Status", (c) => h("span", { class: `badge ${c.status}` }, c.status)],
      ["Assigned", (c) => fmt.time(c.assigned_time)],
      ["Redeemed", (c) => fmt.time(c.redeemed_time)],
      ["User", (c) => c.user_id ?? "–"],
      ["Reward", (c) => c.reward_id ?? "–"],
    ], page.data, "No code with this status."), pager("Codes", page, (s) => load(s).catch(showError)));
  };
  status.input.addEventListener("change", () => load(0).catch(showError));
  const exportButton = h("button", { type: "button" }, "Export CSV");
  exportButton.addEventListener("click", async () => {
    exportButton.disabled = true;
    try {
      await download(projectPath("pools", `${poolId}`, "codes.csv"), { status: status.input.value }, `${poolId}.csv`);
      say(msg, "ok", "Export saved.");
    } catch (err) {
      say(msg, "error", err.message);
    } finally {
      exportButton.disabled = false;
    }
  });
  const section = h("section", { class: "card", "aria-labelledby": "codes-title" },
    h("div", { class: "bar" }, h("h2", { id: "codes-title" }, "Codes in the pool"), status.row, exportButton), msg, list);
  return { section, load };
}

function settingsSection(pool, onSaved) {
  const fields = poolFields(pool);
  const msg = h("div", { class: "msg", role: "status" });
  const form = h("form", { class: "card", "aria-labelledby": "settings-title" },
    h("h2", { id: "settings-title" }, "Settings"), h("div", { class: "grid" }, fields.rows),
    h("button", { type: "submit", class: "primary" }, "Save settings"), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      onSaved(await api("PATCH", projectPath("pools", pool.id), { body: fields.body() }));
      say(msg, "ok", "Saved.");
    } catch (err) {
      say(msg, "error", err.message);
    }
  });
  return form;
}

function deleteSection(pool, rewards) {
  const msg = h("div", { class: "msg", role: "status" });
  const button = h("button", { type: "button", class: "danger" }, "Delete pool");
  button.addEventListener("click", async () => {
    if (!(await confirmAction(`Delete the pool ${pool.name} and all its codes? This cannot be undone.`, "Delete pool"))) return;
    try {
      await api("DELETE", projectPath("pools", pool.id));
      go("#/pools");
    } catch (err) {
      if (err instanceof ApiError && err.code === "pool_in_use") {
        const used = (err.details.used_by || []).map((id) => `${rewards(id)} (${id})`);
        say(msg, "error", `Not deleted: ${err.message}. Rewards using it: ${fmt.list(used)}. Delete those rewards or move them to another pool first.`);
      } else {
        say(msg, "error", err.message);
      }
    }
  });
  return h("section", { class: "card danger-zone", "aria-labelledby": "delete-title" },
    h("h2", { id: "delete-title" }, "Delete"),
    h("p", { class: "muted" }, "Refused while a reward draws from this pool."), button, msg);
}
