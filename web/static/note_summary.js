// The note form's medicines and the patient's visit summary, with a preview the server builds from the
// same function that builds the patient's page and SMS: what the doctor sees is what the patient gets.

export function wireSummary({ form, room, request, t, onChange }) {
  const $ = (id) => document.getElementById(id);
  const rows = $("medicine-rows");
  const share = form.elements.summary_share;
  let previewTimer = null;
  let previewSeq = 0;

  function addRow(m = {}) {
    const li = $("medicine-row").content.firstElementChild.cloneNode(true);
    li.querySelector("[name=med_drug]").value = m.drug || "";
    li.querySelector("[name=med_dose]").value = m.dose || "";
    li.querySelector("[name=med_how]").value = m.how || "";
    li.querySelector(".med-remove").addEventListener("click", () => { li.remove(); onChange(); });
    rows.append(li);
    return li;
  }

  function medicines() {
    return [...rows.children].map((li) => ({
      drug: li.querySelector("[name=med_drug]").value.trim(),
      dose: li.querySelector("[name=med_dose]").value.trim(),
      how: li.querySelector("[name=med_how]").value.trim(),
    })).filter((m) => m.drug);
  }

  function summary() {
    if (!share.checked) return null;
    return {
      advice: form.elements.summary_advice.value,
      medicines: form.elements.summary_medicines.checked,
      follow_up: form.elements.summary_follow_up.checked,
      warning_signs: [...form.querySelectorAll("input[name=summary_warning]:checked")].map((c) => c.value),
      other_warning: form.elements.summary_other_warning.value,
      sms: form.elements.summary_sms.checked,
    };
  }

  function showFields() { $("summary-fields").hidden = !share.checked; }

  function fill(note) {
    rows.replaceChildren();
    for (const m of note.medicines || []) addRow(m);
    const s = note.summary || null;
    share.checked = !!s;
    form.elements.summary_advice.value = s ? s.advice || "" : "";
    form.elements.summary_medicines.checked = s ? s.medicines !== false : true;
    form.elements.summary_follow_up.checked = s ? s.follow_up !== false : true;
    for (const c of form.querySelectorAll("input[name=summary_warning]")) c.checked = !!s && (s.warning_signs || []).includes(c.value);
    form.elements.summary_other_warning.value = s ? s.other_warning || "" : "";
    form.elements.summary_sms.checked = s ? s.sms !== false : true;
    showFields();
    schedulePreview();
  }

  function renderSummary(target, data) {
    target.replaceChildren();
    if (!data) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = t("Nothing to share yet: add advice, medicines, a follow-up date or warning signs.");
      target.append(p);
      return;
    }
    for (const s of data.sections) {
      const h = document.createElement("h4");
      h.textContent = s.title;
      const ul = document.createElement("ul");
      for (const line of s.lines) { const li = document.createElement("li"); li.textContent = line; ul.append(li); }
      target.append(h, ul);
    }
  }

  async function preview(note) {
    const seq = ++previewSeq;
    try {
      const r = await request("POST", `/api/c/${room}/summary/preview`, note);
      if (seq !== previewSeq) return; // a newer preview is on its way
      renderSummary($("summary-preview-page"), r.summary);
      $("summary-preview-sms").textContent = r.sms ? r.sms.text : "";
      $("summary-preview-sms-meta").textContent = r.sms
        ? t("SMS to {phone}: {chars} characters, {segments} SMS", { phone: r.sms_to, chars: r.sms.chars, segments: r.sms.segments })
        : r.summary && note.summary && note.summary.sms && !r.sms_to ? t("No SMS: the patient has no mobile number.")
          : t("No SMS will be sent.");
      $("summary-preview").dataset.ready = String(seq);
    } catch (err) {
      if (seq !== previewSeq) return;
      const field = err.data && err.data.error && err.data.error.field;
      $("summary-preview-sms-meta").textContent = field ? t("Please check this field: {field}", { field })
        : t("Something went wrong. Please try again.");
    }
  }

  let readNote = () => ({});
  function schedulePreview() {
    if (!share.checked) return;
    clearTimeout(previewTimer);
    previewTimer = setTimeout(() => preview(readNote()), 400);
  }

  $("medicine-add").addEventListener("click", () => { addRow().querySelector("input").focus(); onChange(); });
  share.addEventListener("change", showFields);
  form.addEventListener("input", schedulePreview);
  form.addEventListener("change", schedulePreview);
  showFields();

  return {
    read: () => ({ medicines: medicines(), summary: summary() }),
    fill,
    // The whole note (for the preview), supplied by the page once its own reader exists.
    setNoteReader(fn) { readNote = fn; },
    renderSummary,
  };
}
