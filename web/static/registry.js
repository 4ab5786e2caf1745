// Patient registry pages: live type-ahead on the search page; province → commune picker and focus on
// errors in the registration form. Everything works without this script (plain GET/POST forms).
import { strings } from "./signal.js";

const t = strings();
const $ = (id) => document.getElementById(id);

// The same key as care.text.normalize: no diacritics, đ → d, lower case, single spaces.
export function normalize(text) {
  return text.normalize("NFD").replace(/\p{M}/gu, "").replace(/đ/g, "d").replace(/Đ/g, "D")
    .toLowerCase().split(/\s+/).filter(Boolean).join(" ");
}

// ---- search page -------------------------------------------------------------------------------------

function resultRow(p) {
  const li = document.createElement("li");
  li.className = "patient-row";
  const a = document.createElement("a");
  a.href = p.url;
  a.className = "patient-link";
  const strong = document.createElement("strong");
  strong.textContent = p.name;
  a.append(strong);
  const id = document.createElement("span");
  id.className = "muted";
  id.textContent = `#${p.id}`;
  const meta = document.createElement("span");
  meta.className = "meta";
  const parts = [];
  if (p.age !== null) parts.push(t("{age} years", { age: p.age }));
  if (p.sex) parts.push(p.sex);
  if (p.phone) parts.push(p.phone);
  if (p.commune) parts.push(p.commune);
  meta.textContent = parts.length ? ` · ${parts.join(" · ")}` : "";
  li.append(a, " ", id, meta);
  for (const g of p.key_groups) {
    const flag = document.createElement("span");
    flag.className = "flag";
    flag.textContent = g;
    li.append(" ", flag);
  }
  return li;
}

function setupSearch(input) {
  const results = $("results");
  const status = $("search-status");
  let timer = null;
  let controller = null;

  async function run() {
    const q = input.value.trim();
    const url = new URL(window.location.href);
    if (q) url.searchParams.set("q", q); else url.searchParams.delete("q");
    history.replaceState(null, "", url);  // a reload or "back" shows the same results
    for (const id of ["no-results", "recent"]) { const el = $(id); if (el) el.hidden = Boolean(q); }
    if (!q) { results.replaceChildren(); results.hidden = true; status.textContent = ""; return; }
    controller?.abort();
    controller = new AbortController();
    status.textContent = t("Searching…");
    try {
      const r = await fetch(`${input.dataset.api}?q=${encodeURIComponent(q)}`,
        { signal: controller.signal, headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error(String(r.status));
      const body = await r.json();
      results.replaceChildren(...body.results.map(resultRow));
      results.hidden = body.results.length === 0;
      status.textContent = body.results.length
        ? t("{count} patients found", { count: body.results.length })
        : t("No patient matches. Check the spelling, try the phone number, or register a new patient.");
    } catch (err) {
      if (err.name !== "AbortError") status.textContent = t("Could not search. Check your connection.");
    }
  }

  input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 200); });
  // Arrow keys move between the input and the result links; Escape goes back to typing.
  const links = () => [...results.querySelectorAll("a.patient-link")];
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" && links().length) { e.preventDefault(); links()[0].focus(); }
  });
  results.addEventListener("keydown", (e) => {
    const all = links();
    const i = all.indexOf(document.activeElement);
    if (i < 0) return;
    if (e.key === "ArrowDown" && i + 1 < all.length) { e.preventDefault(); all[i + 1].focus(); }
    if (e.key === "ArrowUp") { e.preventDefault(); (i ? all[i - 1] : input).focus(); }
    if (e.key === "Escape") { e.preventDefault(); input.focus(); }
  });
}

// ---- registration form: commune picker ---------------------------------------------------------------

function setupCommunes(province) {
  const select = $("f-commune_code");
  const filter = $("commune-filter");
  const button = $("show-communes");
  if (button) button.remove();  // the no-script fallback; the list now follows the province by itself
  filter.hidden = false;
  let options = [...select.options].filter((o) => o.value).map((o) => ({ code: o.value, name: o.text }));

  function fill(list, chosen) {
    const first = new Option(list.length ? t("Choose a commune") : t("No commune matches."), "");
    select.replaceChildren(first, ...list.map((c) => new Option(c.name, c.code, false, c.code === chosen)));
  }

  province.addEventListener("change", async () => {
    filter.value = "";
    select.replaceChildren(new Option(t("Loading communes…"), ""));
    if (!province.value) { options = []; fill(options, ""); return; }
    try {
      const r = await fetch(`${province.dataset.communesApi}?province=${encodeURIComponent(province.value)}`,
        { headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error(String(r.status));
      options = (await r.json()).communes;
      fill(options, "");
    } catch {
      select.replaceChildren(new Option(t("Could not load the communes. Check your connection."), ""));
    }
  });
  filter.addEventListener("input", () => {
    const key = normalize(filter.value);
    const chosen = select.value;
    fill(options.filter((c) => normalize(c.name).includes(key)), chosen);
  });
  filter.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); select.focus(); }  // Enter picks, it does not submit
  });
}

const search = $("q");
if (search && search.dataset.api) setupSearch(search);
const province = $("f-province");
if (province) setupCommunes(province);
const problem = $("error-summary") || $("duplicates");
if (problem) problem.focus();
