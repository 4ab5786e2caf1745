// The invitation page: copy the patient's link; ask before cancelling an invitation.
const $ = (id) => document.getElementById(id);

const copy = $("copy");
const link = $("link");
if (copy && link && navigator.clipboard) {
  copy.hidden = false;
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(link.value);
      const label = copy.textContent;
      copy.textContent = copy.dataset.copied;
      setTimeout(() => { copy.textContent = label; }, 2000);
    } catch {
      link.select();
    }
  });
}
if (link) link.addEventListener("focus", () => link.select());

for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
