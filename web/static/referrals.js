// Incoming referrals: acknowledge, record the arrival (then reload the list).
import { api } from "./escalation_common.js";

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const row = button.closest("tr[data-referral]");
  try {
    await api("POST", `/api/referrals/${row.dataset.referral}/${button.dataset.action}`);
    location.reload();
  } catch (err) {
    const box = document.getElementById("error");
    box.textContent = err.message;
    box.hidden = false;
  }
});
