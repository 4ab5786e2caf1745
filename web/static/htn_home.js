// "Send my blood pressure" on the patient's link page. The idempotency key is made once per reading and
// kept in sessionStorage until the server answers, so a resend after a dropped network is stored once.
const $ = (id) => document.getElementById(id);
const strings = JSON.parse($("strings").textContent);
const t = (s) => strings[s] || s;
const form = $("home-bp-form");
const status = $("home-bp-status");
const KEY = "dh_bp_key";

function newKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const payload = {
    systolic: parseInt(form.systolic.value, 10), diastolic: parseInt(form.diastolic.value, 10),
    taken_on: form.taken_on.value, key: sessionStorage.getItem(KEY) || newKey(),
  };
  sessionStorage.setItem(KEY, payload.key);
  status.textContent = "";
  try {
    const r = await fetch("/api/p/bp", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${document.body.dataset.token}` },
      body: JSON.stringify(payload),
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      sessionStorage.removeItem(KEY); // refused: a corrected reading is a new one
      const field = data.error && data.error.field;
      if (field && form[field]) form[field].setAttribute("aria-invalid", "true");
      status.textContent = t("Could not send. Check the numbers and try again.");
      status.className = "error";
      return;
    }
    sessionStorage.removeItem(KEY);
    for (const input of form.elements) input.removeAttribute("aria-invalid");
    form.systolic.value = ""; form.diastolic.value = "";
    status.className = data.urgent ? "error" : "notice";
    status.textContent = data.urgent
      ? t("Your blood pressure is very high. Call the health station today, or 115 if you feel unwell.")
      : t("Sent. Thank you.");
  } catch (e) {
    status.className = "error";
    status.textContent = t("Could not send. Check the numbers and try again.");
  }
});
