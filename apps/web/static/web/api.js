// The client page's shared pieces: the JSON API over the session cookie, and small DOM
// helpers. The page's other scripts (form.js, job.js, lists.js, app.js) find them on
// window.JobPage; each script is a plain deferred <script>, run in the order index.html lists.
// Everything the server sends is put on the page as text (textContent), never as HTML.
"use strict";

(function () {
  const JP = (window.JobPage = window.JobPage || {});
  const root = document.getElementById("app");
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;

  JP.TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  JP.STATUSES = ["waiting", "queued", "running", "retrying", "succeeded", "failed", "cancelled"];
  JP.urls = {
    kinds: root.dataset.kindsUrl,
    jobs: root.dataset.jobsUrl,
    workflows: root.dataset.workflowsUrl,
    schedules: root.dataset.schedulesUrl,
    uploads: root.dataset.uploadsUrl,
    login: root.dataset.loginUrl,
  };
  JP.$ = (id) => document.getElementById(id);
  JP.sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  JP.jobUrl = (id) => `${JP.urls.jobs}/${encodeURIComponent(id)}`;

  // --- HTTP -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, details, retryAfter) {
      super(message);
      Object.assign(this, { status, code, details, retryAfter });
    }
  }
  JP.ApiError = ApiError;

  // One request to the API, bounded by a timeout. Resolves {response, data}; rejects with an
  // ApiError carrying the API's error body ({"error": {code, message, details}}) when not 2xx.
  // `body` is sent as JSON, `form` (a FormData) as multipart; `as: "blob"` reads the answer
  // as a Blob (a file) instead of JSON.
  JP.api = async function api(method, url, { body, form, headers = {}, timeoutMs = 15000, as = "json" } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const init = {
      method,
      headers: { Accept: as === "blob" ? "*/*" : "application/json", ...headers },
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    };
    if (method !== "GET") init.headers["X-CSRFToken"] = csrfToken;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    } else if (form !== undefined) {
      init.body = form; // the browser sets the multipart Content-Type with its boundary
    }
    let response, text, blob;
    try {
      response = await fetch(url, init);
      if (as === "blob" && response.ok) blob = await response.blob();
      else text = await response.text();
    } catch (err) {
      const message = controller.signal.aborted ? "The server did not answer in time." : "Could not reach the server.";
      throw new ApiError(0, "network_error", message);
    } finally {
      clearTimeout(timer);
    }
    if (blob !== undefined) return { response, data: blob };
    if (response.status === 304) return { response, data: null };
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) {
      const retryAfter = parseFloat(response.headers.get("Retry-After")) || null;
      const error = data && data.error;
      if (response.status === 401) {
        throw new ApiError(401, (error && error.code) || "not_authenticated", "You are signed out.", null, retryAfter);
      }
      if (error) throw new ApiError(response.status, error.code, error.message, error.details, retryAfter);
      throw new ApiError(response.status, "http_" + response.status, `The server answered ${response.status}.`, null, retryAfter);
    }
    return { response, data };
  };

  // The same path on this page's origin: links the API builds name the host it was asked by,
  // which a proxy may have rewritten.
  JP.sameOrigin = function sameOrigin(url) {
    const u = new URL(url, window.location.href);
    return u.pathname + u.search;
  };

  // --- Small DOM helpers --------------------------------------------------------------------

  JP.el = function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };

  function detailLines(details) {
    if (details === null || details === undefined) return [];
    const show = (v) => (typeof v === "string" ? v : JSON.stringify(v));
    if (Array.isArray(details)) {
      return details.map((d) => (d && typeof d === "object" && "message" in d ? `${d.path || "(root)"}: ${d.message}` : show(d)));
    }
    if (typeof details === "object") {
      return Object.entries(details).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.map(show).join(" ") : show(v)}`);
    }
    return [show(details)];
  }

  // Put an API error in a role="alert" box: its message, its details, and what to do next.
  JP.showError = function showError(box, err) {
    const el = JP.el;
    box.replaceChildren();
    if (err.status === 401) {
      box.append(el("p", {}, "You are signed out. ", el("a", { href: `${JP.urls.login}?next=/`, text: "Sign in again" }), "."));
    } else {
      const message = err.message || "Something went wrong.";
      box.append(el("p", {}, el("strong", { text: message }), err.code ? ` (${err.code})` : ""));
      const lines = detailLines(err.details);
      if (lines.length) box.append(el("ul", {}, ...lines.map((line) => el("li", { text: line }))));
      if (err.retryAfter) box.append(el("p", { text: `Try again in ${Math.ceil(err.retryAfter)} s.` }));
    }
    box.hidden = false;
  };

  JP.clearError = function clearError(box) {
    box.hidden = true;
    box.replaceChildren();
  };

  JP.when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

  JP.statusBadge = (status) => JP.el("span", { class: `status status-${status}`, text: status });

  JP.bytes = function bytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
    return `${(n / 1024 / 1024).toFixed(1)} MB`;
  };
})();
