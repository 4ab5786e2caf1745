// Ask a specialist: the summary is filled in from the record and stays editable; sent as JSON.
import { strings } from "./signal.js";
import { api } from "./escalation_common.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const patient = Number(document.body.dataset.patient);
const consultation = document.body.dataset.consultation || null;

const vitalsText = (v) => Object.entries(v || {}).map(([k, x]) => `${k} ${x}`).join(", ");

async function prefill() {
  const s = await api("GET", `/api/patients/${patient}/escalation-summary`);
  $("reason").value = s.reason || "";
  $("vitals").value = vitalsText(s.vitals);
  $("diagnoses").value = (s.diagnoses || []).join(", ");
  $("medicines").value = (s.medicines || []).join("\n");
  $("recent-bp").value = (s.recent_bp || []).map((b) => `${b.systolic}/${b.diastolic} (${b.at})`).join(", ");
  $("ask-form").dataset.triage = s.triage_level ?? "";
  $("ask-form").dataset.checkin = JSON.stringify(s.checkin || {});
}

$("ask-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("error").hidden = true;
  const question = $("question").value.trim();
  if (!question) { $("error").textContent = t("Write the question for the specialist."); $("error").hidden = false; return; }
  if (!$("consent").checked) { $("error").textContent = t("Record the patient's consent first."); $("error").hidden = false; return; }
  const summary = {
    reason: $("reason").value, vitals: $("vitals").value, diagnoses: $("diagnoses").value,
    medicines: $("medicines").value, recent_bp: $("recent-bp").value,
    triage_level: $("ask-form").dataset.triage, checkin: JSON.parse($("ask-form").dataset.checkin || "{}"),
  };
  const urgency = document.querySelector("input[name=urgency]:checked").value;
  try {
    const e = await api("POST", "/api/escalations", {
      patient_id: patient, specialty: $("specialty").value, urgency, question, consent: true, summary,
      consultation_id: consultation,
    });
    location.assign(`/staff/escalations/${e.id}`);
  } catch (err) {
    $("error").textContent = err.message || t("Something went wrong. Please try again.");
    $("error").hidden = false;
  }
});
prefill();
