// Trace: which codes a user holds and what happened to them; one code looked up,
// checked (read-only) and, after a confirmation, redeemed or released.

import { ApiError, api, projectPath } from "./api.js";
import { confirmAction, field, fill, fmt, h, say, table } from "./dom.js";
import { rewardNames } from "./pools.js";

export async function tracePage(root) {
  // Names for the ids in vouchers and events (one call each, not one per row).
  const [rewards, pools] = await Promise.all([
    rewardNames(),
    api("GET", projectPath("pools"), { query: { count: 1000 } }),
  ]);
  const poolNames = new Map(pools.data.map((p) => [p.id, p.name]));
  const names = { reward: (id) => (id ? rewards(id) : "–"), pool: (id) => (id ? poolNames.get(id) ?? id : "–") };
  const code = codeLookup(names);
  fill(root, h("h1", {}, "Trace"), userLookup(code.lookUp, names), code.element);
}

function userLookup(lookUpCode, names) {
  const user = field("User id", "text", { required: true, spellcheck: "false", maxlength: 128 });
  const out = h("div");
  const form = h("form", { class: "card", "aria-labelledby": "user-title" },
    h("h2", { id: "user-title" }, "Look up a user"),
    h("div", { class: "inline" }, user.row, h("button", { type: "submit", class: "primary" }, "Find user")), out);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = user.input.value.trim();
    try {
      const [vouchers, events] = await Promise.all([
        api("GET", projectPath("users", id, "vouchers"), { query: { count: 100 } }),
        api("GET", projectPath("events"), { query: { user_id: id, count: 100 } }),
      ]);
      fill(out,
        table(`Vouchers of ${id}`, [
          ["Code", (v) => (v.code === null ? "hidden" : h("code", {}, v.code))],
          ["Status", (v) => h("span", { class: `badge ${v.status}` }, v.status)],
          ["Reward", (v) => names.reward(v.reward_id)],
          ["Pool", (v) => h("a", { href: `#/pools/${encodeURIComponent(v.pool_id)}` }, names.pool(v.pool_id))],
          ["Assigned", (v) => fmt.time(v.assigned_time)],
          ["Redeemed", (v) => fmt.time(v.redeemed_time)],
          ["", (v) => (v.code === null ? "" : h("button", { type: "button", "aria-label": `Look up code ${v.code}`, onclick: () => lookUpCode(v.code) }, "Look up"))],
        ], vouchers.data, "This user holds no code."),
        table(`Events of ${id}`, [
          ["Time", (ev) => fmt.time(ev.time)],
          ["Type", (ev) => h("span", { class: "badge" }, ev.type)],
          ["Code", (ev) => (ev.code ? h("code", {}, ev.code) : "–")],
          ["Reward", (ev) => names.reward(ev.reward_id)],
          ["Pool", (ev) => names.pool(ev.pool_id)],
        ], events.data, "No event for this user."));
    } catch (err) {
      say(out, "error", err.message);
    }
  });
  return form;
}

function codeLookup(names) {
  const code = field("Code", "text", { required: true, spellcheck: "false", maxlength: 128 });
  const out = h("div");
  const msg = h("div", { class: "msg", role: "status" });
  const element = h("form", { class: "card", "aria-labelledby": "code-title" },
    h("h2", { id: "code-title" }, "Look up a code"),
    h("div", { class: "inline" }, code.row, h("button", { type: "submit", class: "primary" }, "Check code")),
    h("p", { class: "muted" }, "Checking changes nothing; redeeming and releasing ask first."), out, msg);

  const check = async (text) => {
    const v = await api("POST", projectPath("codes", "validate"), { body: { code: text } });
    const row = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
    const redeem = h("button", { type: "button", class: "primary", disabled: v.status !== "assigned" }, "Redeem code");
    const release = h("button", { type: "button", disabled: v.status !== "assigned" }, "Release code");
    redeem.addEventListener("click", () => act("redeem", text,
      `Redeem ${text}? It is then used: it cannot be redeemed again.`, "Redeem"));
    release.addEventListener("click", () => act("release", text,
      `Release ${text}? It goes back to the pool, to be handed out to someone else.`, "Release"));
    fill(out, h("dl", { class: "facts", "aria-label": `Code ${text}` },
      row("Code", h("code", {}, text)),
      row("Valid", v.valid ? "yes: assigned and not used" : "no"),
      row("Status", v.status ? h("span", { class: `badge ${v.status}` }, v.status) : "–"),
      v.reason ? row("Reason", v.reason.replaceAll("_", " ")) : null,
      row("Pool", names.pool(v.pool_id)), row("Reward", names.reward(v.reward_id)), row("User", v.user_id ?? "–"),
      row("Assigned", fmt.time(v.assigned_time)), row("Redeemed", fmt.time(v.redeemed_time)),
      v.hold_expires_at ? row("Hold expires", fmt.time(v.hold_expires_at)) : null),
    h("div", { class: "actions" }, redeem, release));
  };

  const act = async (verb, text, question, label) => {
    if (!(await confirmAction(question, label))) return;
    try {
      await api("POST", projectPath("codes", verb), { body: { code: text } });
      say(msg, "ok", verb === "redeem" ? `${text} redeemed.` : `${text} released to its pool.`);
    } catch (err) {
      say(msg, "error", err instanceof ApiError ? err.message : String(err));
    }
    await check(text).catch((err) => say(msg, "error", err.message));
  };

  const lookUp = async (text) => {
    code.input.value = text;
    say(msg, "");
    element.scrollIntoView({ block: "start" });
    try {
      await check(text);
    } catch (err) {
      fill(out);
      say(msg, "error", err.message);
    }
  };
  element.addEventListener("submit", (e) => {
    e.preventDefault();
    lookUp(code.input.value.trim());
  });
  return { element, lookUp };
}
