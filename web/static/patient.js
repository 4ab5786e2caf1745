// The patient's page: device check → consent → check-in → waiting room → call → ended.
// The server renders the starting step, so a reload (or a dropped network) resumes where it was.
import { Signal, strings } from "./signal.js";
import { Call, wireCallUi } from "./call.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const body = document.body;
const token = body.dataset.token;
let consented = body.dataset.consented === "true";
let audioOnly = sessionStorage.getItem("dh_audio_only") === "1";
let stream = null;
let meterStop = null;
let signal = null;
let call = null;
let ui = null;
let room = null;

function show(step) {
  for (const section of document.querySelectorAll(".step")) section.hidden = section.id !== `step-${step}`;
  body.dataset.current = step;
  const heading = document.querySelector(`#step-${step} h1`);
  if (heading) { heading.tabIndex = -1; heading.focus({ preventScroll: true }); }
}

function api(path, payload) {
  return fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(payload),
  }).then(async (r) => {
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      if (r.status === 410 || r.status === 404) location.reload(); // link no longer usable: server explains
      throw Object.assign(new Error((data.error && data.error.message) || r.statusText), { data });
    }
    return data;
  });
}

// ---- 1. device check ---------------------------------------------------------------------------

const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 24 } };

async function getMedia(wantVideo) {
  if (!navigator.mediaDevices || !window.RTCPeerConnection) throw Object.assign(new Error(), { name: "Unsupported" });
  return navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true },
    video: wantVideo ? VIDEO : false });
}

function startMeter(s) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx || !s.getAudioTracks().length) return () => {};
  const ctx = new Ctx();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  ctx.createMediaStreamSource(s).connect(analyser);
  const data = new Uint8Array(analyser.fftSize);
  let raf = 0;
  const tick = () => {
    analyser.getByteTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
    $("mic-level").style.width = `${Math.min(100, Math.round((peak / 128) * 180))}%`;
    raf = requestAnimationFrame(tick);
  };
  tick();
  return () => { cancelAnimationFrame(raf); ctx.close(); };
}

async function deviceCheck() {
  show("device");
  $("device-retry").hidden = true;
  try {
    stream = await getMedia(true);
    $("preview").srcObject = stream;
    $("device-status").textContent = t("Camera and microphone work.");
    $("device-ok").disabled = false;
    $("device-test").disabled = false;
  } catch (err) {
    $("device-ok").disabled = true;
    $("device-retry").hidden = false;
    $("device-status").textContent = err.name === "NotAllowedError" || err.name === "SecurityError"
      ? t("Camera or microphone permission was denied. Allow it in your browser settings, or continue with audio only.")
      : err.name === "Unsupported" ? t("Your browser cannot make video calls. Please open the link in Chrome.")
        : t("No camera found. You can continue with audio only.");
    try { stream = await getMedia(false); } catch { stream = null; }
  }
  if (stream) meterStop = startMeter(stream);
}

// ---- optional connection test: our media to the server's echo peer and back ------------------------

const ICE = JSON.parse(($("ice-servers") || { textContent: "[]" }).textContent);
const TEST_SECONDS = 8;

function testApi(method, path, payload) {
  return fetch(path, { method, headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: payload === undefined ? undefined : JSON.stringify(payload) }).then(async (r) => {
    const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
    if (!r.ok) throw Object.assign(new Error(r.statusText), { status: r.status, data });
    return data;
  });
}

function gathered(pc) {
  // The server's peer does not trickle: send the offer with every candidate in it (or after 3 s).
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, 3000);
  });
}

async function connectionTest() {
  const out = $("device-test-result");
  const button = $("device-test");
  button.disabled = true;
  out.textContent = t("Testing the connection…");
  const pc = new RTCPeerConnection({ iceServers: ICE });
  let test = null;
  try {
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await testApi("POST", "/api/p/connection-test", { type: "offer", sdp: pc.localDescription.sdp });
    test = answer.test;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await new Promise((resolve) => setTimeout(resolve, TEST_SECONDS * 1000));
    const s = await testApi("GET", `/api/p/connection-test/${test}`);
    const values = { rtt: s.rtt_ms ?? "–", loss: s.loss_pct ?? 0, kbps: s.kbps_up ?? 0 };
    const weak = (s.loss_pct || 0) > 5 || (s.rtt_ms || 0) > 500 || (s.kbps_up || 0) < 150;
    out.textContent = weak
      ? t("Connection: {rtt} ms round trip, {loss}% lost, {kbps} kbps sent. The network is weak: audio only is better.", values)
      : t("Connection: {rtt} ms round trip, {loss}% lost, {kbps} kbps sent. Video should work.", values);
    out.dataset.result = weak ? "weak" : "good";
    keepTest({ verdict: out.dataset.result, rtt_ms: s.rtt_ms ?? null, loss_pct: s.loss_pct ?? null, kbps_up: s.kbps_up ?? null });
  } catch (err) {
    out.textContent = err.status === 503
      ? t("The server is busy testing other connections. You can continue without the test.")
      : t("The connection test could not reach the server. The call may still work; you can try audio only.");
    out.dataset.result = "failed";
    if (err.status !== 503) keepTest({ verdict: "failed" }); // busy says nothing about the patient's network
  } finally {
    pc.close();
    if (test) testApi("DELETE", `/api/p/connection-test/${test}`).catch(() => {});
    button.disabled = false;
  }
}

// The verdict goes to the doctor with the check-in answers.
function keepTest(result) { sessionStorage.setItem("dh_connection_test", JSON.stringify(result)); }
function keptTest() {
  try {
    const kept = JSON.parse(sessionStorage.getItem("dh_connection_test"));
    return kept && ["good", "weak", "failed"].includes(kept.verdict) ? kept : null;
  } catch { return null; }
}

$("device-test").addEventListener("click", connectionTest);

function leaveDeviceCheck(withVideo) {
  audioOnly = !withVideo;
  sessionStorage.setItem("dh_audio_only", audioOnly ? "1" : "0");
  if (meterStop) meterStop();
  if (stream && audioOnly) for (const tr of stream.getVideoTracks()) { tr.stop(); stream.removeTrack(tr); }
  $("preview").srcObject = null;
  if (consented) show("checkin"); else show("consent");
}

$("device-ok").addEventListener("click", () => leaveDeviceCheck(true));
$("device-audio").addEventListener("click", () => leaveDeviceCheck(false));
$("device-retry").addEventListener("click", () => { if (meterStop) meterStop(); deviceCheck(); });

// ---- 2. consent --------------------------------------------------------------------------------

$("consent-box").addEventListener("change", (e) => { $("consent-ok").disabled = !e.target.checked; });
$("consent-ok").addEventListener("click", async () => {
  $("consent-ok").disabled = true;
  try {
    await api("/api/p/consent", { version: body.dataset.consentVersion });
    consented = true;
    show("checkin");
  } catch {
    $("consent-ok").disabled = false;
  }
});

// ---- 3. check-in -------------------------------------------------------------------------------

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

$("checkin-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("checkin-error");
  err.hidden = true;
  const payload = {
    reason: $("reason").value.trim(),
    symptoms: [...document.querySelectorAll("input[name=symptoms]:checked")].map((c) => c.value),
    days_ill: numberOrNull("days_ill"),
    spo2: numberOrNull("spo2"),
    systolic: numberOrNull("systolic"),
    diastolic: numberOrNull("diastolic"),
    audio_only: audioOnly,
    connection_test: keptTest(),
  };
  for (const k of ["days_ill", "spo2", "systolic", "diastolic"]) {
    if (payload[k] !== null && !Number.isInteger(payload[k])) {
      err.textContent = t("Please check the numbers you entered.");
      err.hidden = false;
      return;
    }
  }
  $("checkin-ok").disabled = true;
  try {
    const result = await api("/api/p/checkin", payload);
    if (result.emergency) { $("emergency").hidden = false; emergencyState(result); }
    enterWaiting();
  } catch (e2) {
    const field = e2.data && e2.data.error && e2.data.error.field;
    err.textContent = field ? t("Please check the numbers you entered.") : t("Something went wrong. Please try again.");
    err.hidden = false;
    if (field && $(field)) $(field).focus();
  } finally {
    $("checkin-ok").disabled = false;
  }
});

// ---- 4. waiting room and 5. call -----------------------------------------------------------------

function connStatus(state) {
  $("conn").textContent = state === "open" ? "" : state === "connecting" ? t("Connecting…") : t("Reconnecting…");
  body.dataset.conn = state;
}

function enterWaiting() {
  show("waiting");
  if (!signal) {
    // Closed for good (the station revoked the link): reloading shows the server's "link cancelled" page.
    signal = new Signal({ token, onMessage, onStatus: connStatus, onEnded: () => location.reload() });
    signal.connect();
  }
}

// The emergency banner says what is true now: a doctor was shown the alert, or nobody is online (issue 8.1).
function emergencyState(s) {
  const online = (s.clinicians_online ?? s.doctors_online ?? 0) > 0;
  $("emergency-alerted").hidden = !online;
  $("emergency-nobody").hidden = online;
  if (s.on_call_texted !== undefined) $("emergency-on-call").dataset.texted = String(Boolean(s.on_call_texted));
  $("emergency-on-call").hidden = online || $("emergency-on-call").dataset.texted !== "true";
  if (s.facility_phone) {
    $("station-phone").href = `tel:${s.facility_phone.replace(/[^+0-9]/g, "")}`;
    if (!$("station-phone").textContent) $("station-phone").textContent = s.facility_phone;
    $("emergency-station").hidden = false;
  }
}

// A notice that the next queue update must not overwrite (requeued, left the call): cleared when paired.
function notice(text) {
  $("queue-notice").textContent = text || "";
  $("queue-notice").hidden = !text;
}

function renderQueue(q) {
  $("position").textContent = q.position === 1 ? t("You are next.") : t("You are number {position} in the queue.", { position: q.position });
  $("position").dataset.position = String(q.position);
  $("eta").textContent = q.eta_s === null ? t("No doctor is online right now. Please keep this page open; we will call you.")
    : q.position === 1 ? "" : t("Expected wait: about {minutes} min.", { minutes: Math.max(1, Math.round(q.eta_s / 60)) });
}

// Who the patient talks to: the doctor's name and facility, from `paired` and `joined`.
function showDoctor(msg) {
  if (!msg.peer_name) return;
  const values = { name: msg.peer_name, facility: msg.peer_facility || "" };
  $("doctor-waiting").textContent = t("Your doctor: {name}, {facility}.", values);
  $("doctor-call").textContent = t("You are talking with {name}, {facility}.", values);
  $("doctor-waiting").hidden = $("doctor-call").hidden = false;
}

async function enterCall(msg) {
  room = msg.room;
  show("call");
  if (!stream || !stream.getTracks().some((tr) => tr.readyState === "live")) {
    try { stream = await getMedia(!audioOnly); } catch { try { stream = await getMedia(false); } catch { stream = null; } }
  }
  $("local").srcObject = stream;
  if (!call) {
    call = new Call({ signal, room, polite: msg.polite, iceServers: iceServers, iceTransportPolicy, remoteVideo: $("remote") });
    // Hanging up leaves the call; only the doctor ends the consultation, and can call back (issue 8.10).
    ui = wireCallUi({ call, signal, t, room, mySide: "patient", peerLabel: t("Doctor"), onHangup: () => {
      if (!confirm(t("Leave the call? The doctor can call you back while this page stays open."))) return;
      signal.send({ type: "leave", room });
      call.close();
      show("waiting");
      $("position").textContent = "";
      $("eta").textContent = "";
      notice(t("You left the call. Keep this page open: the doctor can call you back."));
      $("rejoin").hidden = false;
    } });
    window.dhCall = call;
  }
  call.room = room;
  notice("");
  $("rejoin").hidden = true;
  call.setStream(stream);
  if (audioOnly) { call.setAudioOnly(true); $("btn-audio-only").setAttribute("aria-pressed", "true"); }
  ui.status(t("Waiting for the doctor to join…"));
  signal.send({ type: "join", room });
}

function finish(text, keepListening = false) {
  if (call) call.destroy();
  call = null;
  // After the end the socket stays open: the doctor's signed summary arrives on it (`visit_summary`).
  if (signal && !keepListening) signal.stop();
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  if (text) $("ended-text").textContent = text;
  show("ended");
}

let iceServers = [];
let iceTransportPolicy = "all";

function showSummary(msg) {
  const s = msg.summary[document.documentElement.lang] || msg.summary.vi;
  const out = $("summary-body");
  out.replaceChildren();
  for (const section of s.sections) {
    const h = document.createElement("h3");
    h.textContent = section.title;
    h.dataset.key = section.key;
    const ul = document.createElement("ul");
    ul.dataset.key = section.key;
    for (const line of section.lines) { const li = document.createElement("li"); li.textContent = line; ul.append(li); }
    out.append(h, ul);
  }
  $("summary-meta").textContent = `${msg.day}, ${msg.doctor}`;
  const box = $("visit-summary");
  box.dataset.version = String(msg.version);
  box.hidden = false;
  $("summary-wait").hidden = true;
}

let visitEnded = false;

function onMessage(msg) {
  // After the end this page only waits for the summary: a later visit (another link) is another page's.
  if (visitEnded && msg.type !== "visit_summary" && msg.type !== "error") return;
  if (msg.type === "paired" || msg.type === "joined") showDoctor(msg);
  else if (msg.type === "requeued") $("doctor-waiting").hidden = $("doctor-call").hidden = true;
  // The doctor's connection dropped (an invited specialist leaving is not that: the call goes on).
  if (msg.type === "peer_left" && msg.reason === "disconnected" && ui && (msg.role || "doctor") === "doctor") {
    // The doctor's connection dropped: say so at once, and that the patient keeps their place (issue 8.3).
    if (msg.peer_session) call.drop(msg.peer_session); else call.close();
    ui.status(t("The doctor's connection dropped. You keep your place: if the doctor is not back within {minutes} min, you go back to the front of the queue.",
      { minutes: Math.max(1, Math.round((msg.grace_s || 60) / 60)) }));
    return;
  }
  if (ui && ui.handle(msg, { absentText: t("Waiting for the doctor to join…"),
    peerLeftText: t("The doctor has left the call. Please wait…") })) return;
  switch (msg.type) {
    case "welcome":
      iceServers = msg.ice_servers || [];
      iceTransportPolicy = msg.ice_transport_policy || "all";
      if (msg.state === "checkin") show(consented ? "checkin" : "consent");
      break;
    case "queue":
      // A queue update built just before the claim can arrive after `paired`: a waiting-room message never
      // takes a patient out of a call (only `requeued` or `ended` do).
      if (body.dataset.current === "call") break;
      if (body.dataset.current !== "waiting") show("waiting");
      renderQueue(msg);
      if (!$("emergency").hidden) emergencyState(msg);
      break;
    case "paired":
      $("position").textContent = t("The doctor is ready. Joining the call…");
      enterCall(msg);
      break;
    case "requeued":
      // Stays on screen under the new place (the queue message that follows does not overwrite it).
      if (call) call.close();
      show("waiting");
      notice(t("The doctor was disconnected. You are back at the front of the queue."));
      break;
    case "ended":
      visitEnded = true;
      if (msg.outcome === "no_show") { // nothing was signed: no summary to wait for; a new link came by SMS
        finish(t("The doctor could not reach you, so this consultation was closed. We sent you a new link by SMS."));
        break;
      }
      finish(t("The consultation has ended. Thank you."), true);
      if ($("visit-summary").hidden) $("summary-wait").hidden = false;
      break;
    case "visit_summary":
      if (msg.room === room) showSummary(msg); // this page's visit, not another tab's later one
      break;
    case "replaced":
      finish(t("This page was opened in another tab or device."));
      break;
    case "error":
      if (String(msg.code).startsWith("link_")) { signal.stop(); location.reload(); }
      else console.warn("server error", msg.code, msg.message);
      break;
  }
}

$("rejoin").addEventListener("click", () => { if (room) enterCall({ room, polite: true }); });

// ---- start at the step the server chose -----------------------------------------------------------

const start = body.dataset.step;
if (start === "waiting" || start === "call") enterWaiting();
else deviceCheck();
