// deploy-safety dashboard (SPEC §21). Two jobs, no library:
// 1. Keep the regions marked `data-live` current: every event on the stream (GET /events,
//    authenticated by the session cookie) re-reads this page and swaps those regions in.
// 2. Send action forms (`data-api`) to the JSON API with the session's CSRF token, and show
//    what it answered: on refusal its message, reason and hints, as the API gives them.
// Everything shown is set as text, never as HTML from a response.
(function () {
  "use strict";

  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  const liveStatus = document.getElementById("live-status");

  function setLive(text, state) {
    if (liveStatus) {
      liveStatus.textContent = text;
      liveStatus.dataset.state = state;
    }
  }

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---- Time left, counted down between refreshes (same words as the server writes).
  function leftText(ms) {
    if (ms <= 0) return "expired";
    const seconds = Math.floor(ms / 1000);
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = seconds % 60;
    if (h > 0) return h + " h " + m + " min left";
    if (m > 0) return m + " min " + s + " s left";
    return s + " s left";
  }

  function tick() {
    const now = Date.now();
    for (const node of document.querySelectorAll("[data-expires-at]")) {
      node.textContent = leftText(Number(node.dataset.expiresAt) - now);
    }
  }

  // ---- Live regions.
  let refreshing = false;
  let pending = false;
  let timer = null;

  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(refresh, delay === undefined ? 100 : delay);
  }

  // A region with a form being sent waits: the answer is written into that form.
  function sending(region) {
    return region.querySelector('form[data-sending="1"]') !== null;
  }

  function twinOf(form, forms) {
    return forms.find(
      (f) => f.dataset.api === form.dataset.api && f.id === form.id && f.className === form.className
    );
  }

  // What the person did in the old region survives the swap: typed values, ticked boxes, the
  // answer a form is showing, and the keyboard focus. Returns the element to focus.
  function carryOver(oldRegion, freshRegion) {
    const freshForms = Array.from(freshRegion.querySelectorAll("form[data-api]"));
    const active = document.activeElement;
    let focusTarget = null;
    for (const form of oldRegion.querySelectorAll("form[data-api]")) {
      const twin = twinOf(form, freshForms);
      if (!twin) continue;
      const twinFields = Array.from(twin.elements);
      for (const field of form.elements) {
        const match = twinFields.find((t) => {
          if (field.name) {
            return t.name === field.name && (t.type !== "checkbox" || t.value === field.value);
          }
          return t.tagName === field.tagName && t.textContent === field.textContent;
        });
        if (!match) continue;
        if (field.type === "checkbox" || field.type === "radio") match.checked = field.checked;
        else if (field.tagName !== "BUTTON") match.value = field.value;
        if (field === active) focusTarget = match;
      }
      const result = form.querySelector(".form-result");
      const twinResult = twin.querySelector(".form-result");
      if (result && twinResult && result.childNodes.length > 0) twinResult.replaceWith(result);
    }
    if (!focusTarget && active && oldRegion.contains(active)) {
      if (active.id) focusTarget = freshRegion.querySelector("#" + CSS.escape(active.id));
      else if (active.tagName === "A") {
        focusTarget = Array.from(freshRegion.querySelectorAll("a")).find(
          (a) => a.getAttribute("href") === active.getAttribute("href")
        );
      }
      // What had the focus is gone (a revoked row): keep the keyboard on the page.
      if (!focusTarget) focusTarget = document.getElementById("main");
    }
    return focusTarget;
  }

  async function refresh() {
    if (refreshing) {
      pending = true;
      return;
    }
    refreshing = true;
    try {
      // The audit page's verification runs when asked, not on every event.
      const url = new URL(location.href);
      url.searchParams.delete("verify");
      const response = await fetch(url, {
        credentials: "same-origin",
        // Not the person's activity: the session's idle timeout keeps running.
        headers: { Accept: "text/html", "X-Dashboard-Refresh": "1" },
      });
      if (response.redirected && new URL(response.url).pathname === "/ui/sign-in") {
        location.assign(response.url);
        return;
      }
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const region of document.querySelectorAll("[data-live]")) {
        const replacement = fresh.getElementById(region.id);
        if (!replacement) continue;
        if (sending(region)) {
          pending = true;
          continue;
        }
        const imported = document.importNode(replacement, true);
        const focusTarget = carryOver(region, imported);
        region.replaceWith(imported);
        if (focusTarget) focusTarget.focus({ preventScroll: true });
      }
      tick();
    } catch (error) {
      setLive("Reconnecting…", "down");
    } finally {
      refreshing = false;
      if (pending) {
        pending = false;
        schedule(1000);
      }
    }
  }

  function listen() {
    const url = document.body.dataset.events;
    if (!url || !window.EventSource) {
      setLive("Not live: reload to update", "down");
      return;
    }
    const source = new EventSource(url, { withCredentials: true });
    let opened = false;
    source.onopen = function () {
      setLive("Live", "live");
      // Whatever happened while the stream was down.
      if (opened) schedule();
      opened = true;
    };
    source.onerror = function () {
      setLive("Reconnecting…", "down");
    };
    const types = (document.body.dataset.eventTypes || "").split(" ").filter(Boolean);
    for (const type of types) source.addEventListener(type, () => schedule());
    source.onmessage = () => schedule();
  }

  // ---- Action forms.
  function setPath(body, path, value, each) {
    const keys = path.split(".");
    let node = body;
    for (const key of keys.slice(0, -1)) {
      if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
      node = node[key];
    }
    const last = keys[keys.length - 1];
    if (each) {
      if (!Array.isArray(node[last])) node[last] = [];
      node[last].push(value);
    } else {
      node[last] = value;
    }
  }

  // The form's fields as the API's JSON: empty fields are left out (absent means default),
  // `data-kind` says how to send a value.
  function formBody(form) {
    const body = {};
    for (const field of form.elements) {
      if (!field.name || field.disabled) continue;
      if ((field.type === "checkbox" || field.type === "radio") && !field.checked) continue;
      const kind = field.dataset.kind;
      let value = field.value;
      if (value === "") continue;
      if (kind === "int" && /^-?\d+$/.test(value.trim())) value = Number(value);
      else if (kind === "number" && /^-?\d+(\.\d+)?$/.test(value.trim())) value = Number(value);
      else if (kind === "bool") value = value === "true";
      else if (kind === "list") value = value.split(",").map((s) => s.trim()).filter(Boolean);
      else if (kind === "datetime") {
        const parsed = new Date(value);
        if (!Number.isNaN(parsed.getTime())) value = parsed.toISOString();
      }
      setPath(body, field.name, value, kind === "each");
    }
    return body;
  }

  function showDone(result, text) {
    result.replaceChildren(element("p", { role: "status", class: "done" }, text));
  }

  function showRefusal(form, result, status, payload, fallback) {
    const error = (payload && payload.error) || {};
    const box = element("div", { role: "alert", class: "refusal" });
    const heading = ["Refused", status ? "(" + status + ")" : ""];
    if (error.reason) heading.push(error.reason);
    else if (error.code) heading.push(error.code);
    box.append(element("p", { class: "refusal-head" }, heading.filter(Boolean).join(" ")));
    box.append(element("p", { class: "message" }, error.message || fallback || "The request failed."));
    const hints = Array.isArray(error.hints) ? error.hints.slice() : [];
    const decision = payload && payload.decision;
    if (decision && Array.isArray(decision.hints)) {
      for (const hint of decision.hints) if (!hints.includes(hint)) hints.push(hint);
    }
    if (hints.length) {
      box.append(element("p", {}, "What you can do:"));
      const list = element("ul", { class: "hints" });
      for (const hint of hints) list.append(element("li", {}, hint));
      box.append(list);
    }
    result.replaceChildren(box);
    if (error.field) {
      const field = form.querySelector('[name="' + CSS.escape(error.field) + '"]');
      if (field) {
        field.setAttribute("aria-invalid", "true");
        field.focus();
      }
    }
  }

  async function submit(form) {
    const result = form.querySelector(".form-result") || form.appendChild(element("div", { class: "form-result" }));
    const method = (form.dataset.method || "POST").toUpperCase();
    const body = formBody(form);
    const init = {
      method: method,
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    };
    if (Object.keys(body).length > 0 || (method !== "DELETE" && method !== "GET")) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    for (const field of form.querySelectorAll("[aria-invalid]")) field.removeAttribute("aria-invalid");
    // Not `disabled`: a disabled button loses the keyboard focus. A second submit waits.
    if (form.dataset.sending === "1") return;
    form.dataset.sending = "1";
    const buttons = form.querySelectorAll("button");
    for (const button of buttons) button.setAttribute("aria-disabled", "true");
    // Not `role=status`: that marks the answer, so nobody (and no test) takes this for it.
    result.replaceChildren(element("p", { class: "sending", "aria-busy": "true" }, "Sending…"));
    try {
      const response = await fetch(form.dataset.api, init);
      let payload = null;
      try {
        payload = await response.json();
      } catch (ignored) {
        payload = null;
      }
      if (!response.ok) {
        if (response.status === 401) {
          location.assign("/ui/sign-in?why=expired&returnTo=" + encodeURIComponent(location.pathname + location.search));
          return;
        }
        showRefusal(form, result, response.status, payload);
        return;
      }
      const then = form.dataset.then;
      if (then === "canary" && payload && payload.id) {
        location.assign("/ui/canaries/" + encodeURIComponent(payload.id));
        return;
      }
      if (then && then.startsWith("/")) {
        location.assign(then);
        return;
      }
      showDone(result, "Done.");
      for (const field of form.querySelectorAll("input[type=text], input[type=number], input[type=datetime-local]")) field.value = "";
      schedule(0);
    } catch (error) {
      showRefusal(form, result, 0, null, "The server did not answer: " + error.message);
    } finally {
      delete form.dataset.sending;
      for (const button of buttons) button.removeAttribute("aria-disabled");
    }
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.api) return;
    event.preventDefault();
    submit(form);
  });

  tick();
  setInterval(tick, 1000);
  // A slow safety net beside the stream: times that pass without an event (a freeze window).
  setInterval(() => schedule(0), 30000);
  listen();
})();
