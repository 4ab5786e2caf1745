// The empty call (issue 8.2): while the patient is not in the room, the doctor sees how long they have been
// gone and can call them back (their open page, or their phone) or close the call as a no-show.

export function emptyCallPanel({ room, signal, t, csrf, onClosed }) {
  const $ = (id) => document.getElementById(id);
  const panel = $("empty-call");
  let since = null;     // when the patient went (or when the call started, if they never came)
  let everJoined = false;
  let pageOpen = true; // false: the patient's page is closed (they can only be reached by phone)
  let timer = null;
  if (!panel) return { onMessage() {} };

  function minutes() { return Math.max(0, Math.floor((Date.now() - since) / 60000)); }

  function renderSince() {
    if (since === null) return;
    $("empty-call-since").textContent = !pageOpen
      ? t("The patient's page has been closed for {minutes} min.", { minutes: minutes() })
      : everJoined ? t("The patient left the call {minutes} min ago.", { minutes: minutes() })
        : t("The patient has not come to the call yet ({minutes} min).", { minutes: minutes() });
  }

  function absent(at, joinedBefore) {
    since = at ? Date.parse(at) : Date.now();
    everJoined = everJoined || joinedBefore;
    $("no-show-reason").value = everJoined ? "left" : "never_joined";
    panel.hidden = false;
    renderSince();
    clearInterval(timer);
    timer = setInterval(renderSince, 15000);
  }

  function present() {
    everJoined = true;
    panel.hidden = true;
    $("empty-call-status").textContent = "";
    clearInterval(timer);
  }

  async function post(path, payload) {
    const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(payload || {}) });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw Object.assign(new Error(r.statusText), { status: r.status, data });
    return data;
  }

  $("call-back").addEventListener("click", () => {
    $("empty-call-status").textContent = t("Calling the patient's page…");
    signal.send({ type: "call_back", room });
  });

  $("reveal-phone").addEventListener("click", async () => {
    try {
      const r = await post(`/api/c/${room}/patient-phone`);
      if (!r.phone) { $("empty-call-status").textContent = t("No phone number is recorded for this patient."); return; }
      $("patient-phone").href = `tel:${r.phone}`;
      $("patient-phone").textContent = r.display;
      $("patient-phone").hidden = false;
      $("reveal-phone").hidden = true;
    } catch {
      $("empty-call-status").textContent = t("Something went wrong. Please try again.");
    }
  });

  $("no-show").addEventListener("click", async () => {
    if (!confirm(t("Mark this patient as a no-show? The call closes and they are sent a new link by SMS."))) return;
    $("no-show").disabled = true;
    try {
      const r = await post(`/api/c/${room}/no-show`, { reason: $("no-show-reason").value });
      $("empty-call-status").textContent = r.sms
        ? t("Recorded as a no-show. The patient was sent a new link by SMS.")
        : t("Recorded as a no-show. The patient has no mobile number: no SMS was sent.");
      clearInterval(timer);
      for (const b of panel.querySelectorAll("button, select")) b.disabled = true;
      if (onClosed) onClosed();
    } catch {
      $("no-show").disabled = false;
      $("empty-call-status").textContent = t("Something went wrong. Please try again.");
    }
  });

  return {
    // Called with every socket message of the call page (before the shared call handling).
    onMessage(msg) {
      switch (msg.type) {
        case "joined":
          pageOpen = msg.peer_page_open !== false;
          if (msg.peer_present) present(); else absent(msg.peer_left_at, false);
          break;
        // The panel follows the patient only: an invited specialist coming or going is not the patient.
        case "peer_joined": if (msg.role !== "specialist") { pageOpen = true; present(); } break;
        case "peer_left": if (msg.role !== "specialist") { pageOpen = msg.reason !== "disconnected"; absent(msg.at, true); } break;
        case "calling": $("empty-call-status").textContent = t("Calling the patient's page…"); break;
        case "ended": clearInterval(timer); for (const b of panel.querySelectorAll("button, select")) b.disabled = true; break;
        case "error":
          if (msg.code === "patient_offline") $("empty-call-status").textContent = t("The patient's page is closed: call their phone or mark them as a no-show.");
          break;
      }
    },
  };
}
