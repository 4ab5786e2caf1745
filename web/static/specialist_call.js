// An invited specialist's view of a live call: the patient and the doctor, chat with both; the specialist
// can leave (and join again) while the call goes on. No note: the consultation's doctor writes it.
import { Signal, connectionStatus, signedOut, strings } from "./signal.js";
import { Call, staffMedia, wireCallUi } from "./call.js";

const t = strings();
const $ = (id) => document.getElementById(id);
const room = document.body.dataset.room;
let call = null;
let ui = null;
let stream = null;
let inCall = false;

const signal = new Signal({
  onStatus: connectionStatus(t, $("conn")),
  onMessage,
  onEnded: () => { if (call) call.destroy(); signedOut(t, $("conn")); },
});

function onMessage(msg) {
  if (ui.handle(msg, { absentText: t("Nobody else is in the call yet…"),
    peerLeftText: t("The doctor has left the call. Waiting for them to come back…") })) return;
  switch (msg.type) {
    case "welcome":
      call.configure(msg);
      ui.setMe(msg.staff);
      if (inCall) signal.send({ type: "join", room });
      break;
    case "ended":
    case "requeued": // the doctor dropped for too long: the patient went back to the queue, the call is over
      stop(t("The consultation has ended."));
      $("rejoin").hidden = true;
      break;
    case "replaced":
      call.close(); signal.stop();
      ui.status(t("This page was opened in another tab."));
      break;
    case "error":
      if (msg.code === "room_closed") { stop(t("The consultation has ended.")); $("rejoin").hidden = true; }
      else if (msg.code === "forbidden") stop(t("You are no longer invited into this call."));
      else if (msg.code === "not_authenticated") location.assign("/staff/login");
      break;
  }
}

// Leave the call (or be told it is over): media closed, the others go on without us.
function stop(text) {
  inCall = false;
  call.close();
  document.body.dataset.active = "false";
  document.body.dataset.ended = "true";
  $("after-call-text").textContent = text;
  $("after-call").hidden = false;
}

function enter() {
  inCall = true;
  document.body.dataset.active = "true";
  document.body.dataset.ended = "false";
  $("after-call").hidden = true;
  signal.send({ type: "join", room });
}

$("rejoin").addEventListener("click", enter);

async function main() {
  call = new Call({ signal, room, polite: true, iceServers: [], remoteVideo: $("remote") });
  window.dhCall = call;
  ui = wireCallUi({ call, signal, t, room, mySide: "staff", peerLabel: t("Doctor"), onHangup: () => {
    signal.send({ type: "leave", room });
    stop(t("You left the call. The others carry on."));
  } });
  if (document.body.dataset.active !== "true") { stop(t("The consultation has ended.")); $("rejoin").hidden = true; return; }
  stream = await staffMedia();
  $("local").srcObject = stream;
  call.setStream(stream);
  inCall = true;
  signal.connect();
}
main();
