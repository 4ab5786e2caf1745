// "Message the station" from a worklist row or a patient's record: a dialog that writes a care message to
// the patient's station (POST /api/patients/{id}/threads) and stays on the page, so a specialist can go
// down the worklist. The dialog's data-* attributes hold its translated strings.
import { api } from "./escalation_common.js";

const dialog = document.getElementById("thread-dialog");
const form = document.getElementById("thread-form");
const text = document.getElementById("thread-text");
const status = document.getElementById("thread-status");
const say = (key, values) => {
  let out = dialog.dataset[key] || "";
  for (const [k, v] of Object.entries(values || {})) out = out.replace("{" + k + "}", v);
  return out;
};
let target = null;

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-thread-patient]");
  if (!button) return;
  target = { patient: button.dataset.threadPatient, context: button.dataset.threadContext || null,
    reason: button.dataset.threadReason || null };
  document.getElementById("thread-dialog-title").textContent = say("title", { name: button.dataset.threadName || "" });
  status.replaceChildren();
  text.value = "";
  dialog.showModal();
  text.focus();
});

document.getElementById("thread-close").addEventListener("click", () => dialog.close());

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!target) return;
  const body = { text: text.value };
  if (target.context) body.context = target.context;
  if (target.reason) body.reason = target.reason;
  status.textContent = say("sending");
  try {
    const answer = await api("POST", `/api/patients/${target.patient}/threads`, body);
    const link = Object.assign(document.createElement("a"), { href: `/staff/threads/${answer.thread.id}`, textContent: say("open") });
    status.replaceChildren(document.createTextNode(say("sent") + " "), link);
    status.dataset.thread = answer.thread.id;
    text.value = "";
  } catch (err) {
    status.textContent = say("failed", { error: err.message });
  }
});
