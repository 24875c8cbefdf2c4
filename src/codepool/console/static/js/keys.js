// Keys and webhooks: the project's API keys, its webhook, and deliveries that gave up.

import { ApiError, api, projectPath } from "./api.js";
import { secretRow, showError } from "./app.js";
import { confirmAction, field, fill, fmt, h, pager, say, table } from "./dom.js";

const EVENT_TYPES = ["REDEEMED_VOUCHER", "VOUCHER_USED", "VOUCHER_RELEASED", "POOL_LOW", "POOL_EXHAUSTED"];

export async function keysPage(root) {
  const keys = keysSection();
  const webhook = webhookSection();
  const dead = deadSection();
  fill(root, h("h1", {}, "Keys & webhooks"), keys.element, webhook.element, dead.element);
  await Promise.all([keys.load(), webhook.load(), dead.load()]);
}

function keysSection() {
  const list = h("div");
  const msg = h("div", { class: "msg", role: "status" });
  const name = field("Key name", "text", { required: true, maxlength: 200, placeholder: "Till 4, Berlin store" });
  const role = field("Role", "select", { options: [["pos", "pos: validate and redeem codes"], ["admin", "admin: manage the project"]] });
  const created = h("div", { class: "msg", role: "status" });
  const load = async () => {
    const keys = await api("GET", projectPath("keys"));
    fill(list, table("~API keys", [
      ["Name", (k) => k.name],
      ["Role", (k) => h("span", { class: "badge" }, k.role)],
      ["Id", (k) => h("code", {}, k.id)],
      ["Created", (k) => fmt.time(k.created_at)],
      ["", (k) => h("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.name}`, onclick: () => revoke(k) }, "Revoke")],
    ], keys, "No API key yet."));
  };
  const revoke = async (k) => {
    if (!(await confirmAction(`Revoke the key ${k.name}? Whatever uses it stops working at once.`, "Revoke key"))) return;
    try {
      await api("DELETE", projectPath("keys", k.id));
      say(msg, "ok", `Key ${k.name} revoked.`);
      await load();
    } catch (err) {
      say(msg, "error", err.message);
    }
  };
  const form = h("form", { class: "inline", "aria-label": "Create an API key" },
    name.row, role.row, h("button", { type: "submit", class: "primary" }, "Create key"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const k = await api("POST", projectPath("keys"), { body: { name: name.input.value.trim(), role: role.input.value } });
      form.reset();
      say(created, "ok", h("p", {}, `Key ${k.name} (${k.role}) created. It is shown this once: copy it now.`),
        secretRow("New API key", k.key));
      await load();
    } catch (err) {
      say(created, "error", err.message);
    }
  });
  const element = h("section", { class: "card", "aria-labelledby": "keys-title" },
    h("h2", { id: "keys-title" }, "API keys"), msg, list, h("h3", {}, "Create a key"), form, created);
  return { element, load };
}

function webhookSection() {
  const url = field("Webhook URL", "url", { placeholder: "https://example.com/codepool", required: true });
  const boxes = EVENT_TYPES.map((type) => [type, field(type, "checkbox", { value: type })]);
  const current = h("p", { class: "muted" });
  const msg = h("div", { class: "msg", role: "status" });
  const remove = h("button", { type: "button", class: "danger" }, "Remove webhook");

  const show = (hook) => {
    fill(current, hook ? `Events go to ${hook.url}: ${hook.events.join(", ")}.` : "No project webhook: events are only in the trace.");
    url.input.value = hook?.url ?? "";
    for (const [type, box] of boxes) box.input.checked = hook ? hook.events.includes(type) : false;
    remove.hidden = !hook;
  };
  const load = async () => {
    try {
      show(await api("GET", projectPath("webhook")));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) show(null);
      else throw err;
    }
  };
  const form = h("form", { "aria-label": "Project webhook" }, url.row,
    h("fieldset", {}, h("legend", {}, "Events to send"), h("div", { class: "checks" }, boxes.map(([, b]) => b.row))),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Save webhook"), remove));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const events = boxes.filter(([, b]) => b.input.checked).map(([type]) => type);
    if (!events.length) { say(msg, "error", "Pick at least one event type."); return; }
    try {
      show(await api("PUT", projectPath("webhook"), { body: { url: url.input.value.trim(), events } }));
      say(msg, "ok", "Webhook saved. Deliveries are signed with the project's webhook secret.");
    } catch (err) {
      say(msg, "error", err.message);
    }
  });
  remove.addEventListener("click", async () => {
    if (!(await confirmAction("Stop sending events to the project webhook?", "Remove webhook"))) return;
    try {
      await api("DELETE", projectPath("webhook"));
      show(null);
      say(msg, "ok", "Webhook removed.");
    } catch (err) {
      say(msg, "error", err.message);
    }
  });
  const element = h("section", { class: "card", "aria-labelledby": "webhook-title" },
    h("h2", { id: "webhook-title" }, "Project webhook"), current, form, msg);
  return { element, load };
}

function deadSection() {
  const list = h("div");
  const msg = h("div", { class: "msg", role: "status" });
  let skip = 0;
  const load = async (from = skip) => {
    skip = from;
    const page = await api("GET", projectPath("deliveries", "dead"), { query: { skip, count: 20 } });
    fill(list, table("~Dead letters", [
      ["Gave up", (d) => fmt.time(d.died_at)],
      ["Kind", (d) => d.kind],
      ["Event", (d) => h("span", { class: "badge" }, d.event.type)],
      ["To", (d) => (d.kind === "webhook" ? d.url ?? "–" : fmt.list(d.to))],
      ["Attempts", (d) => fmt.int(d.attempts)],
      ["Last error", (d) => d.error],
      ["", (d) => h("button", { type: "button", "aria-label": `Retry delivery ${d.id}`, onclick: () => retry(d) }, "Retry")],
    ], page.data, "No dead letter: every delivery arrived or is still being tried."),
    pager("Dead letters", page, (s) => load(s).catch(showError)));
  };
  const retry = async (d) => {
    try {
      await api("POST", projectPath("deliveries", "dead", d.id, "retry"));
      say(msg, "ok", `Delivery ${d.id} queued again.`);
      await load();
    } catch (err) {
      say(msg, "error", err.message);
    }
  };
  const element = h("section", { class: "card", "aria-labelledby": "dead-title" },
    h("h2", { id: "dead-title" }, "Dead letters"),
    h("p", { class: "muted" }, "Webhook and email deliveries that failed every retry. Retry sends one again, with a fresh count of attempts."),
    msg, list);
  return { element, load };
}
