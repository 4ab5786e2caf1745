// The doctor's live queue: triage colour, wait, key groups, reason; claim next or a chosen patient.
import { ArrivalAlerts } from "./arrival.js";
import { connectionStatus, Signal, signedOut, strings } from "./signal.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const labels = JSON.parse($("labels").textContent);
const canClaim = document.body.dataset.canClaim === "true";
const csrf = (document.cookie.match(/(?:^|; )dh_csrf=([^;]+)/) || [])[1] || "";
let entries = [];
let serverOffset = 0; // server clock − local clock, so waits are right on a phone with a wrong clock

function minutesWaited(e) {
  return Math.max(0, Math.floor((Date.now() + serverOffset - Date.parse(e.arrived_at)) / 60000));
}

// `text`, marked when the answer `key` raised the triage level ("danger" or "raised", from the server).
function marked(e, text, key) {
  const mark = e.checkin && e.checkin.highlight[key];
  if (!mark) return document.createTextNode(text);
  const m = document.createElement("mark");
  m.className = `hl-${mark}`;
  m.title = t("raised the triage level");
  m.textContent = text;
  return m;
}

// What the patient said at check-in, in one line; the answers that raised the level are marked.
function answers(e) {
  const a = e.checkin;
  if (!a) return null; // coordinators and admins get counts and states, not what the patient said
  const p = document.createElement("p");
  p.className = "answers";
  const parts = [];
  const part = (text, key) => marked(e, text, key);
  if (a.symptoms.length) {
    const span = document.createElement("span");
    a.symptoms.forEach((s, i) => { if (i) span.append(", "); span.append(part(labels.symptoms[s] || s, `symptoms.${s}`)); });
    parts.push(span);
  }
  if (a.days_ill !== null && a.days_ill !== undefined) parts.push(part(t("{days} days ill", { days: a.days_ill }), "days_ill"));
  if (a.spo2 !== null && a.spo2 !== undefined) parts.push(part(t("SpO2 {value}%", { value: a.spo2 }), "spo2"));
  if (a.systolic !== null && a.systolic !== undefined) parts.push(part(t("BP {systolic}/{diastolic}", { systolic: a.systolic, diastolic: a.diastolic }), "bp"));
  if (a.connection_test) {
    const span = document.createElement("span");
    span.className = `conn-test conn-${a.connection_test.verdict}`;
    span.textContent = t("connection: {verdict}", { verdict: labels.verdicts[a.connection_test.verdict] || a.connection_test.verdict });
    parts.push(span);
  }
  parts.forEach((node, i) => { if (i) p.append(" · "); p.append(node); });
  return parts.length ? p : null;
}

function cell(text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text !== undefined) td.textContent = text;
  return td;
}

function render() {
  const tbody = $("queue-body");
  tbody.replaceChildren();
  $("empty").hidden = entries.length > 0;
  for (const e of entries) {
    const tr = document.createElement("tr");
    tr.dataset.entry = e.entry;
    tr.className = `level-${e.colour}`;
    const level = cell(undefined, "c-level");
    const badge = document.createElement("span");
    badge.className = `triage ${e.colour}`;
    badge.textContent = e.level;
    level.append(badge);
    if (canClaim) level.append(" ", levelPicker(e));
    const who = cell(undefined, "c-who");
    // Coordinators and admins get counts and states: no patient (docs/security.md).
    const patient = e.patient || { id: null, name: "—", age: null, key_groups: [] };
    if (patient.id !== null) {
      const name = document.createElement("a");
      name.href = `/staff/patients/${patient.id}`;
      name.textContent = patient.name;
      who.append(name);
    } else {
      who.append(patient.name);
    }
    const meta = [patient.age ? marked(e, `${patient.age}`, "age") : null, e.facility].filter(Boolean);
    if (meta.length) { who.append(" ("); meta.forEach((m, i) => who.append(...(i ? [" · ", m] : [m]))); who.append(")"); }
    for (const g of patient.key_groups) {
      const flag = document.createElement("span");
      flag.className = "flag";
      flag.textContent = labels.key_groups[g] || g;
      who.append(" ", flag);
    }
    if (!e.online) who.append(" ", offlineFlag(e));
    const reason = cell(e.reason || "—", "c-reason");
    if (e.danger_signs.length) {
      const d = document.createElement("strong");
      d.className = "danger-text";
      d.textContent = " " + e.danger_signs.map((s) => labels.danger_signs[s] || s).join(", ");
      reason.append(d);
    }
    if (e.audio_only) { const f = document.createElement("span"); f.className = "flag"; f.textContent = t("audio only"); reason.append(" ", f); }
    const said = answers(e);
    if (said) reason.append(said);
    const waited = cell(t("waiting {minutes} min", { minutes: minutesWaited(e) }), "c-waited");
    if (e.requeued) { const f = document.createElement("span"); f.className = "flag"; f.textContent = t("back in queue"); waited.append(" ", f); }
    const action = cell(undefined, "c-action");
    if (canClaim) {
      const b = document.createElement("button");
      b.className = "button secondary claim";
      b.textContent = t("Claim");
      b.setAttribute("aria-label", `${t("Claim")} ${e.patient.name}`);
      b.addEventListener("click", () => claim(e.entry));
      action.append(b);
    }
    tr.append(level, who, reason, waited, action);
    tbody.append(tr);
  }
  $("total").textContent = `(${entries.length})`;
}

// A doctor may change the suggested level (CLINICAL.md); the server audits the change.
function levelPicker(e) {
  const select = document.createElement("select");
  select.className = "level-picker";
  select.setAttribute("aria-label", t("Change triage level for {name}", { name: e.patient.name }));
  for (const value of ["NC0", "NC1", "NC2", "NC3", "NC4"]) {
    const option = document.createElement("option");
    option.value = option.textContent = value;
    option.selected = value === e.level;
    select.append(option);
  }
  select.addEventListener("change", async () => {
    const r = await fetch(`/api/queue/${e.entry}/level`, {
      method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ level: select.value }) });
    if (!r.ok) { $("claim-error").textContent = t("Something went wrong. Please try again."); $("claim-error").hidden = false; }
  });
  return select;
}

function claim(entry) {
  $("claim-error").hidden = true;
  signal.send(entry ? { type: "claim_next", entry } : { type: "claim_next" });
}

// A patient whose page is closed: skipped by "take next", keeps their place for a while (issue 8.2).
function offlineFlag(e) {
  const f = document.createElement("span");
  f.className = "flag muted offline";
  const gone = e.left_at ? Math.max(0, Math.floor((Date.now() + serverOffset - Date.parse(e.left_at)) / 60000)) : null;
  f.textContent = gone === null ? t("offline") : t("offline {minutes} min", { minutes: gone });
  return f;
}

// Danger alerts stay until someone serving the facility acknowledges them (issue 8.1).
function alertBox(a) {
  if (a.alert && document.querySelector(`#alerts [data-alert="${a.alert}"]`)) return; // sent again on reconnect
  const div = document.createElement("div");
  div.className = "emergency";
  if (a.alert) div.dataset.alert = a.alert;
  const text = document.createElement("span");
  text.textContent = `${a.level} · ${a.patient_name}: ${t("DANGER SIGNS — call or advise 115 now")} (${a.danger_signs.map((s) => labels.danger_signs[s] || s).join(", ")})`;
  div.append(text);
  if (a.alert) {
    const ack = document.createElement("button");
    ack.className = "button secondary ack";
    ack.textContent = t("I take this");
    ack.setAttribute("aria-label", `${t("I take this")}: ${a.patient_name}`);
    ack.addEventListener("click", () => { ack.disabled = true; signal.send({ type: "ack_alert", alert: a.alert }); });
    div.append(" ", ack);
  }
  $("alerts").append(div);
}

function alertAcked(m) {
  const div = document.querySelector(`#alerts [data-alert="${m.alert}"]`);
  if (div) div.remove();
}

// Patients marked no-show stay visible to the station, with the reason (issue 8.2).
function renderNoShows(list) {
  const box = $("no-shows");
  if (!box) return;
  const ul = $("no-shows-list");
  ul.replaceChildren();
  for (const n of list || []) {
    const li = document.createElement("li");
    li.dataset.entry = n.entry;
    li.textContent = `${n.at_text} · ${n.level} · ${n.patient.name} — ${labels.no_show_reasons[n.reason] || n.reason || ""}`;
    ul.append(li);
  }
  box.hidden = !(list && list.length);
}

const alerts = new ArrivalAlerts({ t, checkbox: $("arrival-alerts"), state: $("notify-state"), allow: $("notify-allow") });

const signal = new Signal({
  onStatus: connectionStatus(t, $("conn"), t("Connected")),
  onEnded: () => signedOut(t, $("conn")),
  onMessage: (msg) => {
    switch (msg.type) {
      case "queue_list":
        serverOffset = Date.parse(msg.now) - Date.now();
        entries = msg.entries;
        render();
        alerts.update(entries, msg.total);
        renderNoShows(msg.no_shows);
        break;
      case "alert":
        alertBox(msg);
        break;
      case "alert_acked":
        alertAcked(msg);
        break;
      case "paired":
        location.assign(`/staff/c/${msg.room}`);
        break;
      case "error":
        if (msg.code === "not_authenticated") { location.assign("/staff/login"); break; }
        $("claim-error").textContent = msg.code === "queue_empty" ? t("Nobody is waiting.")
          : msg.code === "doctor_busy" ? t("You already have an active consultation. End it first.")
            : msg.code === "already_claimed" ? t("Another doctor has just taken this patient.")
              : t("Something went wrong. Please try again.");
        $("claim-error").hidden = false;
        break;
    }
  },
});
signal.connect();
if ($("claim-next")) $("claim-next").addEventListener("click", () => claim(null));
setInterval(render, 30000);
