// The client page: builds a form from each kind's input schema, submits jobs, watches one
// live and lists past ones, all through the JSON API with the session cookie. Everything
// the server sends is put on the page as text (textContent), never as HTML.
"use strict";

(function () {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const root = document.getElementById("app");
  const csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  const urls = {
    kinds: root.dataset.kindsUrl,
    jobs: root.dataset.jobsUrl,
    workflows: root.dataset.workflowsUrl,
    login: root.dataset.loginUrl,
  };
  const $ = (id) => document.getElementById(id);
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // --- HTTP -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message, details, retryAfter) {
      super(message);
      Object.assign(this, { status, code, details, retryAfter });
    }
  }

  // One request to the API, bounded by a timeout. Resolves {response, data}; rejects with an
  // ApiError carrying the API's error body ({"error": {code, message, details}}) when not 2xx.
  async function api(method, url, { body, headers = {}, timeoutMs = 15000 } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    const init = {
      method,
      headers: { Accept: "application/json", ...headers },
      credentials: "same-origin",
      cache: "no-store",
      signal: controller.signal,
    };
    if (method !== "GET") init.headers["X-CSRFToken"] = csrfToken;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response, text;
    try {
      response = await fetch(url, init);
      text = await response.text();
    } catch (err) {
      const message = controller.signal.aborted ? "The server did not answer in time." : "Could not reach the server.";
      throw new ApiError(0, "network_error", message);
    } finally {
      clearTimeout(timer);
    }
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
  }

  // The same path on this page's origin: links the API builds name the host it was asked by,
  // which a proxy may have rewritten.
  function sameOrigin(url) {
    const u = new URL(url, window.location.href);
    return u.pathname + u.search;
  }

  const jobUrl = (id) => `${urls.jobs}/${encodeURIComponent(id)}`;

  // --- Small DOM helpers --------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

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
  function showError(box, err) {
    box.replaceChildren();
    if (err.status === 401) {
      box.append(el("p", {}, "You are signed out. ", el("a", { href: `${urls.login}?next=/`, text: "Sign in again" }), "."));
    } else {
      const message = err.message || "Something went wrong.";
      box.append(el("p", {}, el("strong", { text: message }), err.code ? ` (${err.code})` : ""));
      const lines = detailLines(err.details);
      if (lines.length) box.append(el("ul", {}, ...lines.map((line) => el("li", { text: line }))));
      if (err.retryAfter) box.append(el("p", { text: `Try again in ${Math.ceil(err.retryAfter)} s.` }));
    }
    box.hidden = false;
  }

  function clearError(box) {
    box.hidden = true;
    box.replaceChildren();
  }

  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "—");

  // --- The form, built from the kind's input schema -----------------------------------------

  class FieldError extends Error {
    constructor(input, message) {
      super(message);
      this.input = input;
    }
  }

  let kinds = [];
  let fields = [];

  // What widget a property gets; "json" (a raw JSON textarea) for anything else.
  function widgetFor(schema) {
    if (!schema || typeof schema !== "object") return "json";
    if (Array.isArray(schema.enum) && schema.enum.length) return "enum";
    if (schema.type === "array" && schema.items && schema.items.type === "integer" && !schema.items.enum) {
      return "integers";
    }
    return { number: "number", integer: "integer", boolean: "boolean", string: "string" }[schema.type] || "json";
  }

  // "Exactly one of" / "at least one of" a few properties: oneOf/anyOf branches that only list
  // required names. The form shows them as optional fields with a note; the API checks the rest.
  function alternatives(schema) {
    const notes = [];
    for (const [keyword, words] of [["oneOf", "Give exactly one of"], ["anyOf", "Give at least one of"]]) {
      const branches = schema[keyword];
      if (branches === undefined) continue;
      const simple = Array.isArray(branches) && branches.every(
        (b) => b && typeof b === "object" && Object.keys(b).length === 1 && Array.isArray(b.required),
      );
      if (!simple) return null;
      notes.push(`${words}: ${branches.map((b) => b.required.join(" and ")).join(", ")}.`);
    }
    return notes;
  }

  // A whole schema the per-property form cannot express: one JSON textarea for the payload.
  function needsRawPayload(schema) {
    if (!schema || typeof schema !== "object") return true;
    if (schema.type !== undefined && schema.type !== "object") return true;
    if (["allOf", "not", "if", "$ref", "patternProperties", "dependentRequired"].some((k) => k in schema)) return true;
    if (alternatives(schema) === null) return true;
    const hasProperties = schema.properties && Object.keys(schema.properties).length > 0;
    return !hasProperties && schema.additionalProperties !== false;
  }

  function constraintsHint(schema, widget) {
    const parts = [];
    const items = widget === "integers" ? schema.items : schema;
    if (items.minimum !== undefined && items.maximum !== undefined) parts.push(`${items.minimum} to ${items.maximum}`);
    else if (items.minimum !== undefined) parts.push(`at least ${items.minimum}`);
    else if (items.maximum !== undefined) parts.push(`at most ${items.maximum}`);
    if (widget === "integers") {
      parts.unshift("whole numbers separated by commas");
      if (schema.maxItems !== undefined) parts.push(`up to ${schema.maxItems} of them`);
    }
    if (widget === "json") parts.push("JSON");
    return parts.join(", ");
  }

  function buildField(name, schema, required, index) {
    const widget = widgetFor(schema);
    const id = `field-${index}`;
    const hintId = `${id}-hint`;
    const label = schema.title || name;
    const hintText = [schema.description, constraintsHint(schema, widget)].filter(Boolean).join(" — ");
    const common = { id, name, "aria-describedby": hintText ? hintId : undefined };
    const hint = el("p", { class: "hint", id: hintId, text: hintText });
    const labelNode = el("label", { for: id }, label, required ? " (required)" : "");
    let input;
    let read;
    const wrapper = el("div", { class: "field" });

    if (widget === "boolean") {
      input = el("input", { ...common, type: "checkbox", checked: schema.default === true });
      wrapper.classList.add("checkbox");
      wrapper.append(input, labelNode, hint);
      return { name, input, node: wrapper, read: () => input.checked };
    }

    if (widget === "enum") {
      input = el("select", { ...common, required });
      if (!required) input.append(el("option", { value: "", text: "(not set)" }));
      schema.enum.forEach((value, i) => {
        input.append(el("option", { value: String(i), text: typeof value === "string" ? value : JSON.stringify(value) }));
      });
      const initial = schema.enum.findIndex((v) => JSON.stringify(v) === JSON.stringify(schema.default));
      if (initial >= 0) input.value = String(initial);
      read = () => (input.value === "" ? undefined : schema.enum[Number(input.value)]);
    } else if (widget === "number" || widget === "integer") {
      input = el("input", {
        ...common,
        type: "number",
        inputmode: widget === "integer" ? "numeric" : "decimal",
        step: widget === "integer" ? "1" : "any",
        min: schema.minimum,
        max: schema.maximum,
        required,
        value: schema.default,
      });
      read = () => {
        if (input.value.trim() === "") return undefined;
        const value = Number(input.value);
        if (!Number.isFinite(value) || (widget === "integer" && !Number.isInteger(value))) {
          throw new FieldError(input, `${label} must be ${widget === "integer" ? "a whole number" : "a number"}.`);
        }
        return value;
      };
    } else if (widget === "string") {
      // Short unless the schema allows a lot of text (a pattern or format means a short token).
      const long = schema.maxLength !== undefined ? schema.maxLength > 2000 : !(schema.pattern || schema.format);
      const attrs = { ...common, required, minlength: schema.minLength, maxlength: schema.maxLength };
      input = long ? el("textarea", { ...attrs, rows: 3 }) : el("input", { ...attrs, type: "text" });
      if (schema.default !== undefined) input.value = schema.default;
      read = () => (input.value === "" ? undefined : input.value);
    } else if (widget === "integers") {
      input = el("input", { ...common, type: "text", inputmode: "numeric", required, autocomplete: "off" });
      if (Array.isArray(schema.default)) input.value = schema.default.join(", ");
      read = () => {
        const parts = input.value.split(/[\s,]+/).filter(Boolean);
        if (!parts.length) return undefined;
        if (!parts.every((p) => /^-?\d+$/.test(p))) throw new FieldError(input, `${label}: write whole numbers separated by commas.`);
        return parts.map((p) => parseInt(p, 10));
      };
    } else {
      input = el("textarea", { ...common, rows: 3, required, spellcheck: "false" });
      if (schema.default !== undefined) input.value = JSON.stringify(schema.default, null, 2);
      read = () => parseJson(input, label);
    }
    wrapper.append(labelNode, input, hint);

    // Binary input travels as base64 in JSON: offer a file picker that fills the field.
    if (widget === "string" && (schema.contentEncoding === "base64" || /_base64$/.test(name))) {
      const pickerId = `${id}-file`;
      const picker = el("input", { type: "file", id: pickerId });
      picker.addEventListener("change", () => {
        const file = picker.files[0];
        if (!file) return;
        const reader = new FileReader();
        reader.onload = () => {
          input.value = String(reader.result).replace(/^data:[^,]*,/, "");
        };
        reader.readAsDataURL(file);
      });
      wrapper.append(el("div", { class: "hint" }, el("label", { for: pickerId, text: "…or choose a file: " }), picker));
    }
    return { name, input, node: wrapper, read };
  }

  function parseJson(input, label) {
    if (input.value.trim() === "") return undefined;
    try {
      return JSON.parse(input.value);
    } catch (err) {
      throw new FieldError(input, `${label} is not valid JSON: ${err.message}`);
    }
  }

  function renderFields() {
    const container = $("payload-fields");
    container.replaceChildren();
    fields = [];
    const selected = kinds.find((k) => k.name === $("kind").value);
    $("kind-description").textContent = selected ? selected.description || "" : "";
    if (!selected) return;
    const schema = selected.input_schema;
    if (needsRawPayload(schema)) {
      const input = el("textarea", {
        id: "field-payload",
        name: "payload",
        rows: 6,
        spellcheck: "false",
        "aria-describedby": "field-payload-hint",
      });
      input.value = "{}";
      container.append(
        el(
          "div",
          { class: "field" },
          el("label", { for: "field-payload", text: "Payload (JSON)" }),
          input,
          el("p", { class: "hint", id: "field-payload-hint", text: "The job's input as a JSON object." }),
          el("details", {}, el("summary", { text: "Input schema" }), el("pre", { text: JSON.stringify(schema, null, 2) })),
        ),
      );
      fields.push({ raw: true, input, read: () => parseJson(input, "Payload") });
      return;
    }
    for (const note of alternatives(schema)) container.append(el("p", { class: "hint", text: note }));
    const required = new Set(schema.required || []);
    Object.entries(schema.properties || {}).forEach(([name, propertySchema], i) => {
      const field = buildField(name, propertySchema, required.has(name), i);
      container.append(field.node);
      fields.push(field);
    });
    if (!fields.length) container.append(el("p", { class: "hint", text: "This kind takes no input." }));
  }

  function readPayload() {
    for (const field of fields) field.input.removeAttribute("aria-invalid");
    if (fields.length === 1 && fields[0].raw) {
      const payload = fields[0].read();
      return payload === undefined ? {} : payload;
    }
    const payload = {};
    for (const field of fields) {
      const value = field.read();
      if (value !== undefined) payload[field.name] = value;
    }
    return payload;
  }

  async function loadKinds() {
    const select = $("kind");
    try {
      const { data } = await api("GET", urls.kinds);
      kinds = data.kinds || [];
    } catch (err) {
      select.replaceChildren(el("option", { value: "", text: "Kinds could not be loaded" }));
      showError($("form-error"), err);
      return;
    }
    select.replaceChildren(...kinds.map((k) => el("option", { value: k.name, text: k.name })));
    select.disabled = false;
    $("submit-button").disabled = kinds.length === 0;
    renderFields();
  }

  async function submitJob(event) {
    event.preventDefault();
    const errorBox = $("form-error");
    clearError(errorBox);
    let payload;
    try {
      payload = readPayload();
    } catch (err) {
      if (!(err instanceof FieldError)) throw err;
      err.input.setAttribute("aria-invalid", "true");
      err.input.focus();
      showError(errorBox, { message: err.message });
      return;
    }
    const body = { kind: $("kind").value, payload };
    if ($("priority").value) body.priority = $("priority").value;
    const button = $("submit-button");
    button.disabled = true;
    try {
      const { data: job } = await api("POST", urls.jobs, { body });
      upsertRow(job, { prepend: true });
      watch(job);
    } catch (err) {
      showError(errorBox, err);
    } finally {
      button.disabled = false;
    }
  }

  // --- Watching one job live ----------------------------------------------------------------

  let watching = 0; // bumped to stop the loop of the job watched before
  let current = null;

  function renderJob(job) {
    current = job;
    $("current-job").hidden = false;
    $("job-kind").textContent = job.kind;
    $("job-id").textContent = job.id;
    const status = $("job-status");
    if (status.textContent !== job.status) status.textContent = job.status; // announced (aria-live)
    status.className = `status status-${job.status}`;
    $("job-attempts").textContent = `${job.attempts} of ${job.max_attempts}`;
    $("job-created").textContent = when(job.created_at);
    $("job-started").textContent = when(job.started_at);
    $("job-finished").textContent = when(job.finished_at);

    const progress = $("job-progress");
    const progressInfo = job.progress || {};
    let percent = progressInfo.percent;
    if (job.status === "succeeded") percent = 100;
    if (percent === null || percent === undefined) {
      progress.removeAttribute("value"); // indeterminate until the job reports
    } else {
      progress.value = Math.max(0, Math.min(100, percent));
    }
    const percentText = percent === null || percent === undefined ? "" : `${Math.round(percent)}%`;
    $("job-progress-text").textContent = [percentText, progressInfo.message].filter(Boolean).join(" — ");

    const errorBox = $("job-error");
    errorBox.replaceChildren();
    errorBox.hidden = !job.error;
    if (job.error) errorBox.append(el("p", {}, el("strong", { text: job.error.type }), `: ${job.error.message}`));

    const hasResult = job.result !== null && job.result !== undefined;
    $("job-result-block").hidden = !hasResult;
    $("job-result").textContent = hasResult ? JSON.stringify(job.result, null, 2) : "";
    $("cancel-button").hidden = TERMINAL.has(job.status);
    showWorkflow(job);

    for (const row of document.querySelectorAll("#jobs-table tbody tr")) {
      row.classList.toggle("watching", row.dataset.jobId === job.id);
    }
  }

  // A workflow's job: its ref and how far its workflow has got, read again when the job's
  // status changes (a dependency's end is what moves it from waiting to queued).
  let workflowShown = "";
  async function showWorkflow(job) {
    const label = $("job-workflow-label");
    const box = $("job-workflow");
    label.hidden = box.hidden = !job.workflow;
    if (!job.workflow) return;
    const key = `${job.id}|${job.status}`;
    if (workflowShown === key) return;
    workflowShown = key;
    try {
      const { data: workflow } = await api("GET", `${urls.workflows}/${encodeURIComponent(job.workflow.id)}`);
      if (!workflow || workflowShown !== key) return;
      const done = workflow.counts.succeeded + workflow.counts.failed + workflow.counts.cancelled;
      const name = workflow.name ? ` of “${workflow.name}”` : "";
      box.textContent = `${job.workflow.ref}${name}: ${done} of ${workflow.counts.total} jobs finished (${workflow.status})`;
    } catch (err) {
      box.textContent = job.workflow.ref;
    }
  }

  // Follow one job until it is terminal. Long-polls with ?wait (answered at once by an API
  // without it; dropped if the API answers it with an error), always with the ETag of what the
  // page shows: without one the server would wait for a change from whatever state it finds,
  // missing the ones since the page's copy. At most one request a second, however it answers.
  // A wait ends early when the status changes, but progress does not end it: while the job
  // runs, wait one second so the bar keeps moving.
  const waitSeconds = (job) => (job.status === "running" ? 1 : 10);
  async function watch(job) {
    const token = ++watching;
    clearError($("watch-error"));
    renderJob(job);
    history.replaceState(null, "", `#job-${job.id}`);
    let etag = null;
    let wait = true;
    let failures = 0;
    while (token === watching && !TERMINAL.has(job.status)) {
      const started = performance.now();
      const waiting = wait && etag !== null;
      let gapSeconds = 1;
      try {
        const { response, data } = await api("GET", jobUrl(job.id) + (waiting ? `?wait=${waitSeconds(job)}` : ""), {
          headers: etag ? { "If-None-Match": etag } : {},
          timeoutMs: 20000,
        });
        if (token !== watching) return;
        if (data) {
          job = data;
          etag = response.headers.get("ETag");
          renderJob(job);
          upsertRow(job);
        }
        gapSeconds = Math.min(Math.max(parseFloat(response.headers.get("Retry-After")) || 1, 1), 3);
        failures = 0;
        clearError($("watch-error"));
      } catch (err) {
        if (token !== watching) return;
        if (waiting && (err.status === 400 || err.status >= 500)) {
          wait = false; // an API that refuses or fails ?wait: plain polling for this job
          continue;
        }
        showError($("watch-error"), err);
        if ([401, 403, 404].includes(err.status)) return;
        failures += 1;
        gapSeconds = Math.min(err.retryAfter || 2 ** failures, 30);
      }
      await sleep(Math.max(0, gapSeconds * 1000 - (performance.now() - started)));
    }
  }

  async function watchById(id) {
    try {
      const { data } = await api("GET", jobUrl(id));
      watch(data);
    } catch (err) {
      $("current-job").hidden = false;
      showError($("watch-error"), err);
    }
  }

  async function cancelCurrent() {
    if (!current) return;
    const button = $("cancel-button");
    button.disabled = true;
    try {
      const { data } = await api("POST", `${jobUrl(current.id)}/cancel`);
      renderJob(data);
      upsertRow(data);
      clearError($("watch-error"));
    } catch (err) {
      showError($("watch-error"), err);
    } finally {
      button.disabled = false;
    }
  }

  // --- The list of past jobs ----------------------------------------------------------------

  let nextUrl = null;

  function rowCells(job) {
    const percent = job.status === "succeeded" ? 100 : job.progress && job.progress.percent;
    const watchButton = el("button", { type: "button", class: "watch", text: "Watch", "aria-label": `Watch job ${job.id}` });
    watchButton.addEventListener("click", () => {
      // A list row carries no payload or result: fetch the job itself to show them.
      watchById(job.id);
      $("current-job").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    return [
      el("td", { text: when(job.created_at) }),
      el("td", { text: job.kind }),
      el("td", {}, el("span", { class: `status status-${job.status}`, text: job.status })),
      el("td", { text: percent === null || percent === undefined ? "—" : `${Math.round(percent)}%` }),
      el("td", {}, el("code", { title: job.id, text: job.id.slice(0, 8) }), " ", watchButton),
    ];
  }

  function upsertRow(job, { prepend = false } = {}) {
    const body = document.querySelector("#jobs-table tbody");
    let row = body.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
    if (!row) {
      row = el("tr", { "data-job-id": job.id });
      if (prepend) body.prepend(row);
      else body.append(row);
    }
    row.replaceChildren(...rowCells(job));
    row.classList.toggle("watching", current !== null && current.id === job.id);
    $("jobs-empty").hidden = true;
  }

  async function loadJobs({ more = false } = {}) {
    const button = $("load-more");
    const errorBox = $("list-error");
    button.disabled = true;
    try {
      const { data } = await api("GET", more && nextUrl ? nextUrl : urls.jobs);
      if (!more) document.querySelector("#jobs-table tbody").replaceChildren();
      for (const job of data.results) upsertRow(job);
      nextUrl = data.next ? sameOrigin(data.next) : null;
      button.hidden = !nextUrl;
      $("jobs-empty").hidden = document.querySelectorAll("#jobs-table tbody tr").length > 0;
      clearError(errorBox);
    } catch (err) {
      showError(errorBox, err);
    } finally {
      button.disabled = false;
    }
  }

  // --- Start --------------------------------------------------------------------------------

  $("kind").addEventListener("change", renderFields);
  $("submit-form").addEventListener("submit", submitJob);
  $("cancel-button").addEventListener("click", cancelCurrent);
  $("load-more").addEventListener("click", () => loadJobs({ more: true }));
  $("refresh-button").addEventListener("click", () => loadJobs());
  loadKinds();
  loadJobs();
  const linked = /^#job-([0-9a-f-]{36})$/i.exec(window.location.hash);
  if (linked) watchById(linked[1]);
})();
