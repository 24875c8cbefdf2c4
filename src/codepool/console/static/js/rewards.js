// Rewards: what users buy or claim, each drawing its code from one pool.

import { ApiError, api, projectPath } from "./api.js";
import { showError } from "./app.js";
import { confirmAction, field, fill, fmt, h, pager, say, table } from "./dom.js";

export async function rewardsPage(root) {
  const pools = (await api("GET", projectPath("pools"), { query: { count: 1000 } })).data;
  const poolName = (id) => pools.find((p) => p.id === id)?.name ?? id;
  const list = h("div");
  const msg = h("div", { class: "msg", role: "status" });
  const form = rewardForm(pools, async () => { await load(); });
  let skip = 0;

  const load = async (from = skip) => {
    skip = from;
    const page = await api("GET", projectPath("rewards"), { query: { skip, count: 50 } });
    fill(list, table("~Rewards", [
      ["Name", (r) => r.name],
      ["Pool", (r) => h("a", { href: `#/pools/${encodeURIComponent(r.pool_id)}` }, poolName(r.pool_id))],
      ["Available", (r) => h("span", { class: r.available ? "" : "badge empty" }, r.available ? fmt.int(r.available) : "0 · hidden from users")],
      ["Hide code", (r) => (r.hide_code ? "yes" : "no")],
      ["Per-user limit", (r) => (r.per_user_limit === null ? "none" : fmt.int(r.per_user_limit))],
      ["Metadata", (r) => (Object.keys(r.metadata).length ? h("code", {}, JSON.stringify(r.metadata)) : "–")],
      ["", (r) => h("div", { class: "actions" },
        h("button", { type: "button", "aria-label": `Edit reward ${r.name}`, onclick: () => form.edit(r) }, "Edit"),
        h("button", { type: "button", class: "danger", "aria-label": `Delete reward ${r.name}`, onclick: () => remove(r) }, "Delete"))],
    ], page.data, "No reward yet: create one below."), pager("Rewards", page, (s) => load(s).catch(showError)));
  };

  const remove = async (reward) => {
    if (!(await confirmAction(`Delete the reward ${reward.name}? Users can no longer buy it; codes already handed out stay theirs.`, "Delete reward"))) return;
    try {
      await api("DELETE", projectPath("rewards", reward.id));
      say(msg, "ok", `Reward ${reward.name} deleted.`);
      await load();
    } catch (err) {
      say(msg, "error", err.message);
    }
  };

  fill(root, h("h1", {}, "Rewards"),
    h("p", { class: "note" }, "Users only see a reward whose pool still has codes (and has not expired): a reward at 0 available is hidden from them until its pool is refilled."),
    msg, list, form.element);
  await load();
}

function rewardForm(pools, onSaved) {
  const name = field("Reward name", "text", { required: true, maxlength: 200 });
  const pool = field("Pool", "select", { required: true, options: pools.map((p) => [p.id, `${p.name} (${fmt.int(p.available)} available)`]) });
  const hide = field("Hide the code from the user", "checkbox", {}, "For codes applied for the user behind the scenes: they never see it.");
  const limit = field("Per-user limit", "number", { min: 1, step: 1 }, "Empty: no limit.");
  const metadata = field("Metadata (JSON)", "textarea", { rows: 3, spellcheck: "false", placeholder: '{"points": 500}' });
  const title = h("h2", { id: "reward-form-title" });
  const submit = h("button", { type: "submit", class: "primary" });
  const cancel = h("button", { type: "button", hidden: true }, "Cancel");
  const msg = h("div", { class: "msg", role: "status" });
  let editing = null;

  const reset = () => {
    editing = null;
    element.reset();
    fill(title, "Create a reward");
    fill(submit, "Create reward");
    cancel.hidden = true;
  };
  const edit = (r) => {
    editing = r;
    name.input.value = r.name;
    pool.input.value = r.pool_id;
    hide.input.checked = r.hide_code;
    limit.input.value = r.per_user_limit ?? "";
    metadata.input.value = Object.keys(r.metadata).length ? JSON.stringify(r.metadata, null, 2) : "";
    fill(title, `Edit reward ${r.name}`);
    fill(submit, "Save reward");
    cancel.hidden = false;
    say(msg, "");
    element.scrollIntoView({ block: "start" });
    name.input.focus();
  };

  const element = h("form", { class: "card", "aria-labelledby": "reward-form-title" },
    title, h("div", { class: "grid" }, name.row, pool.row, limit.row, hide.row), metadata.row,
    h("div", { class: "actions" }, submit, cancel), msg);
  cancel.addEventListener("click", reset);
  element.addEventListener("submit", async (e) => {
    e.preventDefault();
    let meta = {};
    try {
      meta = metadata.input.value.trim() ? JSON.parse(metadata.input.value) : {};
      if (typeof meta !== "object" || meta === null || Array.isArray(meta)) throw new Error("not an object");
    } catch {
      say(msg, "error", "Metadata must be a JSON object, like {\"points\": 500}.");
      return;
    }
    const body = {
      name: name.input.value.trim(),
      pool_id: pool.input.value,
      hide_code: hide.input.checked,
      per_user_limit: limit.input.value ? Number(limit.input.value) : null,
      metadata: meta,
    };
    try {
      const saved = editing
        ? await api("PATCH", projectPath("rewards", editing.id), { body })
        : await api("POST", projectPath("rewards"), { body });
      const verb = editing ? "saved" : "created";
      reset();
      say(msg, "ok", `Reward ${saved.name} ${verb}.`);
      await onSaved();
    } catch (err) {
      say(msg, "error", err instanceof ApiError ? err.message : String(err));
    }
  });
  if (!pools.length) say(msg, "error", "Create a pool first: a reward draws its codes from one.");
  reset();
  return { element, edit };
}
