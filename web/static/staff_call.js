// The doctor's call view: video + chat beside the consult note (autosaved drafts, signed versions).
import { Signal, connectionStatus, signedOut, strings } from "./signal.js";
import { Call, staffMedia, wireCallUi } from "./call.js";
import { wireSummary } from "./note_summary.js";
import { emptyCallPanel } from "./empty_call.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const room = document.body.dataset.room;
const csrf = (document.cookie.match(/(?:^|; )dh_csrf=([^;]+)/) || [])[1] || "";
let call = null;
let ui = null;
let stream = null;
let version = 0;
let diagnoses = [];
let noteDirty = false; // edited since the last signature
let emptyCall = null;

// ---- call -----------------------------------------------------------------------------------------

const signal = new Signal({
  onStatus: connectionStatus(t, $("conn")),
  onMessage,
  onEnded: () => { if (call) call.destroy(); signedOut(t, $("conn")); },
});

function onMessage(msg) {
  if (emptyCall) emptyCall.onMessage(msg);
  if (ui.handle(msg, { absentText: t("Patient is not in the call yet…"),
    peerLeftText: t("Patient left the call. Waiting for them to come back…") })) return;
  switch (msg.type) {
    case "welcome":
      call.configure(msg);
      ui.setMe(msg.staff);
      if (document.body.dataset.active === "true") signal.send({ type: "join", room });
      break;
    case "ended":
      closeCall();
      break;
    case "requeued":
      closeCall(t("The patient was put back in the queue because you were disconnected."));
      break;
    case "queue_list":
      $("next-waiting").textContent = msg.total ? `(${t("Patients waiting: {count}", { count: msg.total })})` : "";
      break;
    case "paired":
      location.assign(`/staff/c/${msg.room}`);
      break;
    case "replaced":
      call.destroy(); signal.stop();
      ui.status(t("This page was opened in another tab."));
      break;
    case "error":
      if (msg.code === "not_authenticated") location.assign("/staff/login");
      else if (msg.code === "room_closed") closeCall();
      else if (document.body.dataset.ended === "true") {
        $("next-error").textContent = msg.code === "queue_empty" ? t("Nobody is waiting.")
          : msg.code === "doctor_busy" ? t("You already have an active consultation. End it first.")
            : t("Something went wrong. Please try again.");
        $("next-error").hidden = false;
      }
      break;
  }
}

// ---- after the call: media and controls closed, the note open to finish, one click to the next patient ----

function closeCall(text) {
  call.destroy();
  if (stream) for (const track of stream.getTracks()) track.stop();
  document.body.dataset.active = "false";
  document.body.dataset.ended = "true";
  if (text) $("after-call-text").textContent = text;
  $("after-call").hidden = false;
}

$("next-patient").addEventListener("click", async () => {
  $("next-error").hidden = true;
  if ((version === 0 || noteDirty) && !confirm(t("The note is not signed yet. Take the next patient anyway? Your draft is kept."))) return;
  await flushDraft();
  signal.send({ type: "claim_next" });
});

// ---- note -----------------------------------------------------------------------------------------

const form = $("note-form");
const summaryPart = wireSummary({ form, room, request: (...a) => request(...a), t, onChange: () => scheduleSave() });
const textFields = ["subjective", "objective", "assessment", "plan"];
const vitalFields = ["systolic", "diastolic", "pulse", "temperature", "spo2", "weight"];

function noteFromForm() {
  const vitals = {};
  for (const f of vitalFields) {
    const v = form.elements[f].value.trim();
    if (v !== "") vitals[f] = Number(v);
  }
  const note = { vitals, diagnoses: diagnoses.map((d) => d.code), follow_up_on: form.elements.follow_up_on.value || null };
  for (const f of textFields) note[f] = form.elements[f].value;
  return Object.assign(note, summaryPart.read());
}

function fillForm(note) {
  for (const f of textFields) form.elements[f].value = note[f] || "";
  for (const f of vitalFields) form.elements[f].value = note.vitals && note.vitals[f] !== undefined ? note.vitals[f] : "";
  form.elements.follow_up_on.value = note.follow_up_on || "";
  diagnoses = (note.diagnoses || []).map((d) => (typeof d === "string" ? { code: d, name: "" } : d));
  renderDiagnoses();
  summaryPart.fill(note);
}

function renderVersions(versions) {
  const list = $("note-versions");
  list.replaceChildren();
  for (const v of versions) {
    const li = document.createElement("li");
    li.textContent = `v${v.version} · ${v.author} · ${v.signed_at_text} · ${v.note.diagnoses.join(", ")}`;
    list.append(li);
  }
  $("note-version").textContent = version ? `(v${version})` : "";
}

async function request(method, path, payload) {
  const r = await fetch(path, { method, headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: payload === undefined ? undefined : JSON.stringify(payload) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error((data.error && data.error.message) || r.statusText), { status: r.status, data });
  return data;
}

async function loadNote() {
  const data = await request("GET", `/api/c/${room}/note`);
  const latest = data.versions[data.versions.length - 1];
  version = latest ? latest.version : 0;
  if (data.draft && data.draft.base_version === version) { fillForm(data.draft.note); noteDirty = true; }
  else if (latest) fillForm(latest.note);
  renderVersions(data.versions);
}

let saveTimer = null;
async function saveDraft() {
  saveTimer = null;
  try {
    const r = await request("PUT", `/api/c/${room}/note/draft`, { base_version: version, note: noteFromForm() });
    $("note-status").textContent = t("Draft saved {time}", { time: r.saved_at_text });
  } catch {
    $("note-status").textContent = t("Could not save the draft. Check your connection.");
  }
}
function scheduleSave() {
  noteDirty = true;
  clearTimeout(saveTimer);
  $("note-status").textContent = t("Saving draft…");
  saveTimer = setTimeout(saveDraft, 1200);
}
// Save a pending draft now (before leaving the page for the next patient).
async function flushDraft() {
  if (saveTimer === null) return;
  clearTimeout(saveTimer);
  await saveDraft();
}
form.addEventListener("input", scheduleSave);
summaryPart.setNoteReader(noteFromForm);

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  clearTimeout(saveTimer);
  saveTimer = null;
  const err = $("note-error");
  err.hidden = true;
  $("note-sign").disabled = true;
  try {
    const signed = await request("POST", `/api/c/${room}/note/sign`, { expected_version: version, note: noteFromForm() });
    version = signed.version;
    noteDirty = false;
    $("note-status").textContent = t("Signed version {version}", { version: signed.version })
      + (signed.note.summary ? " · " + t("The patient can see the summary.") : "");
    // An I10–I15 diagnosis for a patient not in the hypertension register: offer enrolment here.
    if (signed.htn_offer && $("htn-offer")) $("htn-offer").hidden = false;
    const data = await request("GET", `/api/c/${room}/note`);
    renderVersions(data.versions);
  } catch (e2) {
    const field = e2.data && e2.data.error && e2.data.error.field;
    const input = field && form.elements[field.replace("vitals.", "").replace("summary.", "summary_")];
    const label = input && input.labels && input.labels[0] ? input.labels[0].textContent.trim() : field;
    err.textContent = e2.status === 409 ? t("Someone signed a newer version. Reload to see it before editing.")
      : field ? t("Please check this field: {field}", { field: label }) : t("Something went wrong. Please try again.");
    if (input && input.focus) input.focus();
    err.hidden = false;
  } finally {
    $("note-sign").disabled = false;
  }
});

// ---- ICD-10 search (an accessible combobox) -------------------------------------------------------

const search = $("icd-search");
const results = $("icd-results");
let options = [];
let active = -1;
let searchTimer = null;

function renderDiagnoses() {
  const ul = $("diagnoses");
  ul.replaceChildren();
  diagnoses.forEach((d, i) => {
    const li = document.createElement("li");
    li.className = "chip";
    li.textContent = d.name ? `${d.code} ${d.name}` : d.code;
    const x = document.createElement("button");
    x.type = "button";
    x.className = "link";
    x.textContent = "×";
    x.setAttribute("aria-label", `✕ ${d.code}`);
    x.addEventListener("click", () => { diagnoses.splice(i, 1); renderDiagnoses(); scheduleSave(); });
    li.append(" ", x);
    ul.append(li);
  });
}

function closeList() { results.hidden = true; search.setAttribute("aria-expanded", "false"); active = -1; }

function choose(o) {
  if (!diagnoses.some((d) => d.code === o.code)) diagnoses.push({ code: o.code, name: o.name });
  renderDiagnoses();
  search.value = "";
  closeList();
  scheduleSave();
}

function renderOptions() {
  results.replaceChildren();
  if (!options.length) {
    const li = document.createElement("li");
    li.textContent = t("No code or name matches.");
    li.setAttribute("aria-disabled", "true");
    results.append(li);
  }
  options.forEach((o, i) => {
    const li = document.createElement("li");
    li.id = `icd-opt-${i}`;
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", String(i === active));
    li.textContent = `${o.code} — ${o.name}`;
    li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(o); });
    results.append(li);
  });
  results.hidden = false;
  search.setAttribute("aria-expanded", "true");
  search.setAttribute("aria-activedescendant", active >= 0 ? `icd-opt-${active}` : "");
}

search.addEventListener("input", (e) => {
  e.stopPropagation();
  clearTimeout(searchTimer);
  const q = search.value.trim();
  if (!q) { closeList(); return; }
  searchTimer = setTimeout(async () => {
    const data = await request("GET", `/api/icd10?q=${encodeURIComponent(q)}`);
    options = data.results;
    active = options.length ? 0 : -1;
    renderOptions();
  }, 150);
});
search.addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown" && options.length) { active = (active + 1) % options.length; renderOptions(); e.preventDefault(); }
  else if (e.key === "ArrowUp" && options.length) { active = (active - 1 + options.length) % options.length; renderOptions(); e.preventDefault(); }
  else if (e.key === "Enter" && active >= 0) { choose(options[active]); e.preventDefault(); }
  else if (e.key === "Escape") closeList();
});
search.addEventListener("blur", () => setTimeout(closeList, 100));

// ---- start ----------------------------------------------------------------------------------------

async function main() {
  call = new Call({ signal, room, polite: false, iceServers: [], remoteVideo: $("remote") });
  window.dhCall = call;
  ui = wireCallUi({ call, signal, t, room, mySide: "staff", peerLabel: t("Patient"), onHangup: () => {
    if (confirm(t("End the consultation for both of you?"))) signal.send({ type: "end", room });
  } });
  emptyCall = emptyCallPanel({ room, signal, t, csrf, onClosed: () => closeCall() });
  loadNote().catch(() => { $("note-status").textContent = t("Something went wrong. Please try again."); });
  if (document.body.dataset.active !== "true") { closeCall(); signal.connect(); return; }
  stream = await staffMedia();
  $("local").srcObject = stream;
  call.setStream(stream);
  signal.connect();
}
main();
