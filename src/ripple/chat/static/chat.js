// The ripple chat page. No build step, no dependencies.
//
// It connects to the "ws" endpoint next to the page (ws:// or wss:// as the
// page was served), joins with the chosen name, shows what arrives, and
// reconnects with exponential backoff when the connection drops. Every piece
// of text from the server goes into the page with textContent, never as HTML.
// The messages are described in docs/chat.md.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const stateEl = $("state");
  const messagesEl = $("messages");
  const usersEl = $("users");
  const joinForm = $("join");
  const nameInput = $("name");
  const composeForm = $("compose");
  const textInput = $("text");
  const youLabel = $("you");
  const noticeEl = $("notice");

  const MIN_DELAY = 500; // ms before the first reconnection attempt
  const MAX_DELAY = 15000; // ms, the most the backoff grows to

  let sock = null; // the current WebSocket, if any
  let me = null; // {id, name} once the server welcomed us
  let name = null; // the name to join with (kept across reconnections)
  let epoch = null; // the server run whose ids we've seen
  let lastId = 0; // the highest event id shown
  let attempts = 0; // reconnection attempts since the last welcome
  let timer = null; // the pending reconnection
  let noticeTimer = null;
  const users = new Map(); // user id -> name

  function setState(state, text) {
    stateEl.dataset.state = state;
    stateEl.textContent = text;
  }

  function notice(text) {
    noticeEl.textContent = text;
    clearTimeout(noticeTimer);
    if (text) noticeTimer = setTimeout(() => { noticeEl.textContent = ""; }, 8000);
  }

  function endpoint() {
    const url = new URL("ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.search = "";
    url.hash = "";
    return url.href;
  }

  function connect() {
    clearTimeout(timer);
    timer = null;
    setState("connecting", "connecting…");
    const ws = new WebSocket(endpoint());
    sock = ws;
    ws.onopen = () => {
      if (sock !== ws) return;
      setState("joining", "joining…");
      ws.send(JSON.stringify(joinMessage()));
    };
    ws.onmessage = (event) => {
      if (sock === ws) receive(event.data);
    };
    ws.onclose = (event) => {
      if (sock !== ws) return;
      sock = null;
      me = null;
      reconnectLater(event);
    };
  }

  // Reconnecting: say the last id we saw, and get exactly what we missed.
  function joinMessage() {
    const msg = { type: "join", name };
    if (epoch !== null && lastId > 0) {
      msg.since = lastId;
      msg.epoch = epoch;
    }
    return msg;
  }

  function reconnectLater(event) {
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** attempts);
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    attempts += 1;
    const why = event.code === 1006 ? "connection lost" : `closed ${event.code}${event.reason ? ": " + event.reason : ""}`;
    setState("reconnecting", `${why}; reconnecting in ${Math.ceil(delay / 1000)} s`);
    composeForm.querySelector("button").disabled = true;
    timer = setTimeout(connect, delay);
  }

  function receive(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg === null || typeof msg !== "object") return;
    switch (msg.type) {
      case "welcome":
        welcome(msg);
        break;
      case "message":
      case "join":
      case "leave":
        show(msg);
        break;
      case "resync":
        // The room's ids started over (its store lost them): follow the new ones.
        epoch = msg.epoch;
        lastId = msg.last_id || 0;
        system("the chat's history was reset");
        break;
      case "error":
        failed(msg);
        break;
      default:
        break; // a newer server: ignore what we don't know
    }
  }

  function welcome(msg) {
    me = msg.you;
    attempts = 0;
    setState("connected", "connected");
    if (msg.epoch !== epoch) {
      if (epoch !== null) system("the server restarted");
      epoch = msg.epoch;
      lastId = 0;
    } else if (msg.gap) {
      system("you were away too long: some messages are missing");
    }
    users.clear();
    for (const user of msg.users) users.set(user.id, user.name);
    renderUsers();
    for (const event of msg.history) show(event);
    if (typeof msg.last_id === "number" && msg.last_id > lastId) lastId = msg.last_id;
    youLabel.textContent = me.name;
    joinForm.hidden = true;
    composeForm.hidden = false;
    composeForm.querySelector("button").disabled = false;
    textInput.focus();
  }

  function failed(msg) {
    notice(msg.message || msg.code);
    if (msg.code === "bad_name") {
      // Still connected, not in the room: ask for another name.
      setState("idle", "pick another name");
      joinForm.hidden = false;
      composeForm.hidden = true;
      nameInput.focus();
      nameInput.select();
    }
  }

  function show(event) {
    if (typeof event.id !== "number" || event.id <= lastId) return; // seen already
    lastId = event.id;
    if (event.type === "join") users.set(event.user.id, event.user.name);
    if (event.type === "leave") users.delete(event.user.id);
    if (event.type !== "message") renderUsers();

    const li = document.createElement("li");
    li.className = event.type;
    li.dataset.id = String(event.id);
    li.dataset.user = event.user.id;
    if (me && event.user.id === me.id) li.classList.add("mine");
    const when = new Date(event.ts);
    const time = document.createElement("time");
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString();
    const who = document.createElement("span");
    who.className = "name";
    who.textContent = event.user.name;
    const what = document.createElement("span");
    what.className = "text";
    what.textContent = event.type === "message" ? event.text : event.type === "join" ? "joined" : "left";
    li.append(time, who, what);
    append(li);
  }

  function system(text) {
    const li = document.createElement("li");
    li.className = "system";
    li.textContent = text;
    append(li);
  }

  function append(li) {
    const atBottom = messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 40;
    messagesEl.append(li);
    if (atBottom) li.scrollIntoView({ block: "end" });
  }

  function renderUsers() {
    const items = [];
    for (const [id, userName] of users) {
      const li = document.createElement("li");
      li.dataset.user = id;
      li.textContent = userName;
      items.push(li);
    }
    usersEl.replaceChildren(...items);
  }

  joinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = nameInput.value.trim();
    if (!chosen) return;
    name = chosen;
    try {
      localStorage.setItem("ripple-chat-name", name);
    } catch {
      // storage may be off; the name just isn't remembered
    }
    notice("");
    if (sock && sock.readyState === WebSocket.OPEN) {
      sock.send(JSON.stringify(joinMessage()));
      setState("joining", "joining…");
    } else if (!sock) {
      connect();
    }
  });

  composeForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = textInput.value;
    if (!text.trim()) return;
    if (!sock || sock.readyState !== WebSocket.OPEN || !me) {
      notice("not connected: your message is still in the box");
      return;
    }
    sock.send(JSON.stringify({ type: "message", text }));
    textInput.value = "";
  });

  // Back online: don't wait for the backoff.
  window.addEventListener("online", () => {
    if (timer !== null) connect();
  });

  let saved = null;
  try {
    saved = localStorage.getItem("ripple-chat-name");
  } catch {
    saved = null;
  }
  nameInput.value = saved || `guest-${Math.floor(1000 + Math.random() * 9000)}`;
  nameInput.focus();
  nameInput.select();
})();
