// Building the page: elements from data, always as text, never as HTML.
//
// Codes, pool names and user ids are user input. Nothing here (or anywhere in the
// console) hands a string to an HTML parser; the CSP requires Trusted Types with no policy,
// so the browser would refuse it anyway.

let uid = 0;

/** A fresh id for label/control pairs. */
export function nextId(prefix = "f") {
  uid += 1;
  return `${prefix}-${uid}`;
}

/**
 * h("button", {class: "primary", onclick: fn}, "Save") -> <button class="primary">Save</button>
 * Attributes: on* are listeners, `class`, `text` (textContent), boolean and
 * property-like keys (value, checked, disabled, hidden) are set as properties,
 * anything else with setAttribute. Children: nodes, strings (as text), arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key === "value") {
      el.value = value;
      // The default too, so that a form reset keeps it (a shown-once secret, say).
      if ("defaultValue" in el) el.defaultValue = value;
    } else if (["checked", "disabled", "hidden", "selected", "multiple", "required"].includes(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace everything inside ``el`` with ``children``. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A labelled control: returns {row, input}. kind: input type, "textarea" or "select". */
export function field(label, kind = "text", attrs = {}, hint = null) {
  const id = nextId();
  let input;
  if (kind === "textarea") {
    input = h("textarea", { id, ...attrs });
  } else if (kind === "select") {
    const { options = [], ...rest } = attrs;
    input = h("select", { id, ...rest },
      options.map(([value, text]) => h("option", { value }, text)));
  } else {
    input = h("input", { id, type: kind, ...attrs });
  }
  const hintEl = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  const row = kind === "checkbox"
    ? h("div", { class: "field check" }, input, h("label", { for: id }, label), hintEl)
    : h("div", { class: "field" }, h("label", { for: id }, label), input, hintEl);
  return { row, input };
}

/** A table: columns = [[heading, row => cell]], a cell being a node or text. */
export function table(caption, columns, rows, empty = "Nothing yet.") {
  const head = h("tr", {}, columns.map(([title]) => h("th", { scope: "col" }, title)));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map(([, cell]) => h("td", {}, cell(row)))))
    : [h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, empty))];
  return h("div", { class: "table-wrap" },
    h("table", {}, h("caption", { class: caption.startsWith("~") ? "sr-only" : "" },
      caption.replace(/^~/, "")), h("thead", {}, head), h("tbody", {}, body)));
}

/** Prev/next buttons for a list answer {matched, skip, limit}; go(skip) loads a page. */
export function pager(label, page, go) {
  const { matched, skip, limit } = page;
  const last = Math.min(skip + page.data.length, matched);
  if (skip === 0 && last >= matched && !page.matched_limited) return null; // one page: no pager
  const status = matched ? `${fmt.int(skip + 1)}–${fmt.int(last)} of ${fmt.int(matched)}${page.matched_limited ? "+" : ""}` : "none";
  return h("nav", { class: "pager", "aria-label": `${label} pages` },
    h("button", { type: "button", disabled: skip <= 0, onclick: () => go(Math.max(0, skip - limit)) }, "Previous"),
    h("span", { class: "muted" }, status),
    h("button", { type: "button", disabled: last >= matched, onclick: () => go(skip + limit) }, "Next"));
}

/** A labelled count in a summary bar (Sidekiq's stats row). */
export function stat(label, value, cls = "") {
  return h("li", { class: `stat ${cls}` }, h("span", { class: "num" }, fmt.int(value)), h("span", { class: "label" }, label));
}

/** A stacked bar: available / assigned / redeemed shares of total. */
export function stockBar(pool) {
  const total = pool.total || 0;
  const pct = (n) => (total ? `${(100 * n) / total}%` : "0%");
  const bar = h("div", {
    class: "stock", role: "img",
    "aria-label": `${fmt.int(pool.available)} of ${fmt.int(total)} available`,
  });
  const parts = [["available", pool.available], ["assigned", pool.assigned], ["redeemed", pool.redeemed]];
  for (const [name, n] of parts) {
    if (n === undefined || n === null) continue;
    const seg = h("span", { class: `seg ${name}` });
    seg.style.width = pct(n); // CSSOM, which the CSP allows (unlike a style attribute)
    bar.append(seg);
  }
  return bar;
}

/** A status message under a form: kind "ok" | "error" | "". */
export function say(el, kind, ...children) {
  el.className = `msg ${kind}`;
  fill(el, ...children);
}

export const fmt = {
  int: (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US")),
  time: (t) => (t === null || t === undefined ? "–" : new Date(t * 1000).toLocaleString("en-GB", {
    year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  })),
  minute: (t) => new Date(t * 1000).toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" }),
  list: (xs) => (xs && xs.length ? xs.join(", ") : "–"),
};

/** "1, 2\n3" -> [1, 2, 3]; throws on anything but whole numbers >= 0. */
export function parseInts(text, what) {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  return parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new Error(`${what}: "${p}" is not a whole number`);
    return Number(p);
  });
}

export function parseList(text) {
  return text.split(/[\s,]+/).filter(Boolean);
}

/** A datetime-local value -> Unix seconds (null when empty), and back. */
export function fromLocalInput(value) {
  return value ? new Date(value).getTime() / 1000 : null;
}

export function toLocalInput(t) {
  if (t === null || t === undefined) return "";
  const d = new Date(t * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** Ask before doing something that cannot be undone; resolves true when confirmed. */
export function confirmAction(message, confirmLabel) {
  const dialog = document.getElementById("confirm");
  fill(dialog.querySelector(".confirm-text"), message);
  const ok = dialog.querySelector(".confirm-ok");
  ok.textContent = confirmLabel;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

/** Copy ``text`` to the clipboard; the button says whether it worked. */
export async function copy(text, button) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select and copy by hand";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
}
