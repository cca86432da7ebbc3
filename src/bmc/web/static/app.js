// bmc serve: the page's behaviour, in plain JavaScript (no build step, nothing from a CDN).
//
// Safety rule for this file: text that came from a model, a document or a research file is
// only ever put into the page with textContent. The one exception is HTML the server made
// (markdown rendered with raw HTML off, every value escaped), which arrives in the `html`
// field of an event or as the documents fragment; the Content-Security-Policy forbids
// inline scripts in any case.
"use strict";

const csrf = document.querySelector('meta[name="bmc-csrf"]').content;

function say(text, isError) {
  const line = document.getElementById("status-line");
  line.textContent = text;
  line.className = isError ? "error" : "";
}

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-bmc-csrf": csrf },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = {}; }
  if (!response.ok) {
    const error = new Error(data.error || `The server answered ${response.status}.`);
    error.data = data;
    throw error;
  }
  return data;
}

// A link in a model reply, a research file or a document leads away from the workspace: it
// opens in a new tab (the chat and a pending agreement stay where they are), and tells the
// site nothing about this page.
function outward(container) {
  for (const link of container.querySelectorAll("a[href]")) {
    if (link.origin === window.location.origin) continue;
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  return container;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- forms outside a project (new engagement, API key) ---------------------------------

for (const form of document.querySelectorAll("form[data-action]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = Object.fromEntries(new FormData(form).entries());
    try {
      const data = await post(form.dataset.action, body);
      if (form.dataset.go && data[form.dataset.go]) window.location.assign(data[form.dataset.go]);
      else if (form.dataset.reload) window.location.reload();
    } catch (error) { say(error.message, true); }
  });
}

// --- a project ------------------------------------------------------------------------

// The project page's root (the engagements page has a form field with the id "project").
const root = document.querySelector("div#project[data-base]");
if (root) project(root);

function project(root) {
  const base = root.dataset.base;
  const log = document.getElementById("log");
  const message = document.getElementById("message");
  let source = null;
  let current = null; // the assistant reply streaming now
  let shown = null; // the agreement on screen: its digest is what an answer carries

  function scrollDown() { log.scrollTop = log.scrollHeight; }

  // The consultant's own words: shown as soon as the server took them, and again from the
  // run's events (`ConsultantSaid`, when the server logs them) for a reload or a second tab.
  // Whichever comes second is the same message, not a new one.
  const sentHere = [];
  const loggedThere = [];
  function said(text, fromRun) {
    const [mine, theirs] = fromRun ? [loggedThere, sentHere] : [sentHere, loggedThere];
    const seen = theirs.indexOf(text);
    if (seen >= 0) { theirs.splice(seen, 1); return; }
    mine.push(text);
    log.append(el("div", "msg consultant", text));
    scrollDown();
  }
  function notice(text) { log.append(el("div", "notice", text)); scrollDown(); }

  function connect() {
    if (source) source.close();
    source = new EventSource(`${base}/events`);
    source.addEventListener("bmc", (event) => handle(JSON.parse(event.data)));
  }

  function handle(e) {
    switch (e.type) {
      case "ConsultantSaid":
        said(e.text, true);
        break;
      case "ReplyStarted":
        hideAgreement(); // answered: the model goes on (after feedback, or after a yes)
        current = el("div", "msg assistant streaming");
        log.append(current);
        break;
      case "TextDelta":
        if (!current) { current = el("div", "msg assistant streaming"); log.append(current); }
        current.textContent += e.text;
        scrollDown();
        break;
      case "ReplyDropped":
        if (current) current.remove();
        current = null;
        notice(`(reply dropped: ${e.reason}; asking again)`);
        break;
      case "ReplyFinished":
        if (current) {
          if (e.html) { current.innerHTML = e.html; outward(current); current.classList.remove("streaming"); }
          else if (!current.textContent) current.remove();
        }
        current = null;
        break;
      case "ToolLine": {
        const line = el("div", e.is_error ? "tool refused" : "tool", `${e.is_error ? "✗" : "·"} ${e.name} ${e.summary}`.trim());
        if (e.is_error) line.append(el("pre", "problems", e.text));
        log.append(line);
        scrollDown();
        if (!e.is_error && (e.name === "write" || e.name === "edit")) loadDocuments();
        break;
      }
      case "Notice":
        notice(e.text);
        break;
      case "WaitingForMessage":
        root.dataset.state = "message";
        message.focus();
        break;
      case "AgreementRequested":
        showAgreement(e);
        break;
      case "AgreementRecorded":
        hideAgreement();
        notice(`Agreed: ${e.gate} written and recorded in decisions.md.`);
        for (const gate of e.stale) notice(`${gate} is now stale: agree that stage again.`);
        loadDocuments();
        break;
      case "Usage":
        document.getElementById("usage").textContent = `Turns: ${e.turns} · Cost: $${e.cost.toFixed(4)}`;
        break;
      case "Stopped":
        root.dataset.state = "stopped";
        hideAgreement();
        if (e.reason) notice(e.reason);
        if (source) source.close();
        source = null;
        loadDocuments();
        break;
    }
  }

  function showAgreement(e) {
    shown = e.digest;
    root.dataset.state = "agreement";
    const panel = document.getElementById("agreement");
    document.getElementById("agreement-heading").textContent = `Agree: ${e.what}`;
    document.getElementById("agreement-digest").textContent = e.digest;
    const changed = document.getElementById("agreement-changed");
    changed.hidden = !e.changed_from;
    changed.textContent = e.changed_from
      ? `${e.document} changed after you were shown it (${e.changed_from} → ${e.digest}); nothing was agreed. This is the version now on disk.`
      : "";
    const items = document.getElementById("agreement-items");
    items.replaceChildren(...e.items.map((item) => el("li", "", item)));
    document.getElementById("agreement-scope").textContent = e.scope ? `Scope: ${e.scope}` : "";
    document.getElementById("agreement-rendered").innerHTML = e.html; // made by the server, escaped
    outward(document.getElementById("agreement-rendered"));
    document.getElementById("agreement-markdown").textContent = e.markdown;
    // The documents panel turns to the document being agreed, as the client will read it.
    const agreed = [...document.querySelectorAll("#documents section[data-path]")].find((s) => s.dataset.path === e.document);
    if (agreed) selectTab(document.querySelector(`#documents [role="tab"][data-tab="${agreed.id}"]`));
    document.getElementById("agree").disabled = false;
    document.getElementById("send-feedback").disabled = false;
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
  }

  function hideAgreement() {
    shown = null;
    document.getElementById("agreement").hidden = true;
    for (const id of ["send-feedback", "client-feedback"]) document.getElementById(id).hidden = false;
    document.querySelector('label[for="client-feedback"]').hidden = false;
  }

  // Agreeing outside a chat (as `bmc agree STAGE`): the same panel, answered by /agree.
  let outside = null; // the stage key while the panel shows such a proposal
  for (const button of document.querySelectorAll("button.agree-outside")) {
    button.addEventListener("click", async () => {
      try {
        const response = await fetch(`${base}/proposal?stage=${encodeURIComponent(button.dataset.stage)}`, { credentials: "same-origin" });
        const data = await response.json();
        if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
        outside = button.dataset.stage;
        showAgreement(data);
        document.getElementById("send-feedback").hidden = true;
        document.querySelector('label[for="client-feedback"]').hidden = true;
        document.getElementById("client-feedback").hidden = true;
      } catch (error) { say(error.message, true); }
    });
  }

  async function agreeOutside(contact) {
    const agree = document.getElementById("agree");
    agree.disabled = true;
    try {
      const data = await post(`${base}/agree`, { stage: outside, digest: shown, contact, as: document.getElementById("opt-as").value });
      say(`Agreed: ${data.agreed} written and recorded in decisions.md.`);
      outside = null;
      hideAgreement();
      loadDocuments();
    } catch (error) { say(error.message, true); agree.disabled = false; }
  }

  async function answer(body) {
    if (outside && body.agreed) { agreeOutside(body.contact); return; }
    // One answer per agreement shown: a double click, or Agree then Send feedback, sends one.
    const buttons = [document.getElementById("agree"), document.getElementById("send-feedback")];
    for (const button of buttons) button.disabled = true;
    try {
      await post(`${base}/answer`, { digest: shown, ...body });
      say(body.agreed ? "Your yes was sent." : "The client's feedback was sent.");
      if (!body.agreed) document.getElementById("client-feedback").value = "";
    } catch (error) {
      say(error.message, true);
      for (const button of buttons) button.disabled = false;
    }
  }

  document.getElementById("agree").addEventListener("click", () =>
    answer({ agreed: true, contact: document.getElementById("client-contact").value }));
  document.getElementById("send-feedback").addEventListener("click", () => {
    const feedback = document.getElementById("client-feedback");
    if (!feedback.value.trim()) { say("Write the client's feedback first.", true); feedback.focus(); return; }
    answer({ agreed: false, feedback: feedback.value });
  });

  document.getElementById("composer").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = message.value.trim();
    if (!text) { say("Type a message first.", true); return; }
    try {
      await post(`${base}/send`, { text });
      said(text, false);
      message.value = "";
    } catch (error) { say(error.message, true); }
  });

  document.getElementById("stop").addEventListener("click", async () => {
    try { await post(`${base}/stop`); say("Stopping: the session is saved."); }
    catch (error) { say(error.message, true); }
  });

  function runOptions() {
    return {
      model: document.getElementById("opt-model").value,
      max_cost: document.getElementById("opt-cost").value,
      provider: document.getElementById("opt-provider").value,
      as: document.getElementById("opt-as").value,
    };
  }

  for (const button of document.querySelectorAll("button.start")) {
    button.addEventListener("click", async () => {
      const opening = document.getElementById("opening");
      say(`Starting ${button.dataset.skill}…`); // the first start of a server takes a few seconds
      button.disabled = true;
      try {
        await post(`${base}/start`, { skill: button.dataset.skill, message: opening.value, ...runOptions() });
        log.replaceChildren();
        if (opening.value.trim()) said(opening.value.trim(), false);
        opening.value = "";
        say(`${button.dataset.skill} started.`);
        connect();
      } catch (error) { say(error.message, true); }
      button.disabled = false;
    });
  }

  for (const button of document.querySelectorAll("button.resume")) {
    button.addEventListener("click", async () => {
      say(`Resuming session ${button.dataset.session}…`);
      button.disabled = true;
      try {
        await post(`${base}/resume`, { session: button.dataset.session, ...runOptions() });
        // The transcript on screen stays when it is this session's: it goes on from there.
        if (log.dataset.session !== button.dataset.session) log.replaceChildren();
        notice(`Session ${button.dataset.session} resumed.`);
        const interrupted = document.getElementById("interrupted");
        if (interrupted) interrupted.hidden = true;
        say(`Session ${button.dataset.session} resumed.`);
        connect();
      } catch (error) { say(error.message, true); }
      button.disabled = false;
    });
  }

  for (const button of document.querySelectorAll("button.demo-line")) {
    button.addEventListener("click", () => { message.value = button.dataset.line; message.focus(); });
  }

  document.getElementById("validate").addEventListener("click", async () => {
    try {
      const data = await post(`${base}/validate`);
      const bad = data.reports.filter((r) => r.status === "invalid").length;
      say(bad ? `${bad} document(s) have problems: see the documents panel.` : "Every document that exists is valid.");
      loadDocuments();
    } catch (error) { say(error.message, true); }
  });

  document.getElementById("render").addEventListener("click", async () => {
    try {
      const data = await post(`${base}/render`);
      say(`Wrote ${data.written.join(" and ")}.`);
      loadDocuments();
    } catch (error) { say(error.message, true); }
  });

  document.getElementById("upload").addEventListener("click", async () => {
    const input = document.getElementById("upload-file");
    if (!input.files.length) { say("Choose a file to upload first.", true); return; }
    const form = new FormData();
    form.append("file", input.files[0]);
    try {
      const response = await fetch(`${base}/upload`, { method: "POST", headers: { "x-bmc-csrf": csrf }, body: form, credentials: "same-origin" });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error || `The server answered ${response.status}.`);
      say(data.imported);
      input.value = "";
    } catch (error) { say(error.message, true); }
  });

  // --- documents panel and editor -----------------------------------------------------

  async function loadDocuments() {
    const response = await fetch(`${base}/documents`, { credentials: "same-origin" });
    const holder = document.getElementById("documents");
    const selected = holder.querySelector('[role="tab"][aria-selected="true"]');
    holder.innerHTML = await response.text(); // made by the server, escaped
    if (selected) selectTab(holder.querySelector(`[data-tab="${selected.dataset.tab}"]`));
    wireDocuments();
  }

  function wireDocuments() {
    const holder = outward(document.getElementById("documents"));
    // The stages and the decisions log as they are now, when the server sent them along.
    const now = holder.querySelector(".now");
    if (now) {
      const stages = now.querySelector("ol.stages");
      const shownStages = root.querySelector(":scope > ol.stages");
      if (stages && shownStages) shownStages.replaceWith(stages);
      const decisions = root.querySelector(".decisions");
      if (decisions) decisions.replaceChildren(...now.querySelector(".decisions-now").childNodes);
      if (decisions) outward(decisions);
      now.remove();
    }
    for (const tab of holder.querySelectorAll('[role="tab"]')) tab.addEventListener("click", () => selectTab(tab));
    for (const button of holder.querySelectorAll("button[data-edit]")) button.addEventListener("click", () => edit(button.dataset.edit));
  }

  function selectTab(tab) {
    if (!tab) return;
    const holder = document.getElementById("documents");
    for (const other of holder.querySelectorAll('[role="tab"]')) {
      const on = other === tab;
      other.setAttribute("aria-selected", on ? "true" : "false");
      document.getElementById(other.dataset.tab).hidden = !on;
    }
  }

  let editing = null;
  let editingFrom = null;
  async function edit(path) {
    try {
      const response = await fetch(`${base}/file?path=${encodeURIComponent(path)}`, { credentials: "same-origin" });
      const data = await response.json();
      if (!response.ok) throw new Error(data.error);
      editing = path;
      editingFrom = data.digest; // a save of a file changed meanwhile is refused
      document.getElementById("editor-path").textContent = path;
      document.getElementById("editor-text").value = data.text;
      document.getElementById("editor-problems").replaceChildren();
      document.getElementById("editor").hidden = false;
    } catch (error) { say(error.message, true); }
  }

  document.getElementById("editor-save").addEventListener("click", async () => {
    try {
      await post(`${base}/save`, { path: editing, digest: editingFrom, text: document.getElementById("editor-text").value });
      say(`${editing} saved.`);
      document.getElementById("editor").hidden = true;
      loadDocuments();
    } catch (error) {
      say(error.message, true);
      const problems = (error.data && error.data.problems) || [];
      document.getElementById("editor-problems").replaceChildren(...problems.map((p) => el("li", "", p)));
    }
  });
  document.getElementById("editor-cancel").addEventListener("click", () => { document.getElementById("editor").hidden = true; });

  wireDocuments(); // the panel came with the page; it is fetched again as documents change
  outward(log);
  scrollDown(); // a kept conversation opens where it stands: its newest words
  for (const decisions of document.querySelectorAll(".decisions")) outward(decisions);
  if (root.dataset.live === "yes") connect();
}
