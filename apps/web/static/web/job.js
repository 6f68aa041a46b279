// One job, followed live: its status, progress, result, the files it made (links, and images
// previewed), and what can be done to it (cancel while it runs, retry once it has failed).
// Live updates come from the job's server-sent events (GET /api/v1/jobs/{id}/events, the
// session cookie authenticates an EventSource as it does fetch); where the stream cannot be
// used, the long poll with the ETag takes over.
"use strict";

(function () {
  const JP = window.JobPage;
  const { $, el, api, showError, clearError, when, jobUrl, sleep, TERMINAL } = JP;
  const ACTIVE = new Set(["queued", "running", "retrying"]);
  const IMAGE = /\.(png|jpe?g|gif|webp)$/i;
  const PREVIEW_MAX_BYTES = 5 * 1024 * 1024;

  let watching = 0; // bumped to stop following the job followed before
  let current = null;
  let stream = null;

  function renderProgress(job) {
    const progress = $("job-progress");
    const info = job.progress || {};
    let percent = info.percent;
    if (job.status === "succeeded") percent = 100;
    const known = percent !== null && percent !== undefined;
    // An indeterminate <progress> is an animated "busy" bar: only while the job may still
    // move. A finished job's bar stands still, at the last percent it reported (or empty).
    if (known) progress.value = Math.max(0, Math.min(100, percent));
    else if (ACTIVE.has(job.status)) progress.removeAttribute("value");
    else progress.value = 0;
    progress.classList.toggle("finished", TERMINAL.has(job.status));
    const percentText = known ? `${Math.round(percent)}%` : "";
    const stopped = job.status === "failed" || job.status === "cancelled" ? `stopped (${job.status})` : "";
    $("job-progress-text").textContent = [percentText, info.message, stopped].filter(Boolean).join(" — ");
  }

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
    renderProgress(job);

    const errorBox = $("job-error");
    errorBox.replaceChildren();
    errorBox.hidden = !job.error;
    if (job.error) errorBox.append(el("p", {}, el("strong", { text: job.error.type }), `: ${job.error.message}`));

    const hasResult = job.result !== null && job.result !== undefined;
    $("job-result-block").hidden = !hasResult;
    $("job-result").textContent = hasResult ? JSON.stringify(job.result, null, 2) : "";
    renderFiles(job);
    $("cancel-button").hidden = TERMINAL.has(job.status);
    $("retry-button").hidden = job.status !== "failed";
    showWorkflow(job);

    for (const row of document.querySelectorAll("#jobs-table tbody tr")) {
      row.classList.toggle("watching", row.dataset.jobId === job.id);
    }
  }

  // --- The files a job made -----------------------------------------------------------------

  let filesShown = "";
  let objectUrls = [];

  function renderFiles(job) {
    const files = Array.isArray(job.files) ? job.files : [];
    // Drawn again only when they change: a retry rewrites the same names, so its end counts.
    const key = `${job.id}|${job.finished_at}|${files.map((f) => f.name).join("/")}`;
    if (key === filesShown) return;
    filesShown = key;
    for (const url of objectUrls) URL.revokeObjectURL(url);
    objectUrls = [];
    const list = $("job-files");
    list.replaceChildren();
    $("job-files-block").hidden = files.length === 0;
    for (const file of files) {
      const href = JP.sameOrigin(file.url);
      const item = el("li", { "data-file": file.name }, el("a", { href, download: file.name, text: file.name }));
      list.append(item);
      if (IMAGE.test(file.name)) preview(item, href, file.name, key);
    }
  }

  // An <img> cannot send the API's token: the file is fetched like any API call (the same
  // credentials) and shown from an object URL, so a preview works however the page signs in.
  async function preview(item, href, name, key) {
    try {
      const { data: blob } = await api("GET", href, { as: "blob", timeoutMs: 30000 });
      if (filesShown !== key) return;
      if (!blob.type.startsWith("image/") || blob.size > PREVIEW_MAX_BYTES) return;
      const url = URL.createObjectURL(blob);
      objectUrls.push(url);
      item.prepend(el("a", { href, download: name, class: "preview" }, el("img", { src: url, alt: `Preview of ${name}` })));
    } catch (err) {
      if (filesShown === key) item.append(el("span", { class: "hint", text: ` (no preview: ${err.message})` }));
    }
  }

  // --- A workflow's job -------------------------------------------------------------------

  // Its ref and how far its workflow has got, read again when the job's status changes (a
  // dependency's end is what moves it from waiting to queued).
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
      const { data: workflow } = await api("GET", `${JP.urls.workflows}/${encodeURIComponent(job.workflow.id)}`);
      if (!workflow || workflowShown !== key) return;
      const done = workflow.counts.succeeded + workflow.counts.failed + workflow.counts.cancelled;
      const name = workflow.name ? ` of “${workflow.name}”` : "";
      box.textContent = `${job.workflow.ref}${name}: ${done} of ${workflow.counts.total} jobs finished (${workflow.status})`;
    } catch (err) {
      box.textContent = job.workflow.ref;
    }
  }

  // --- Following a job live ---------------------------------------------------------------

  function update(job) {
    renderJob(job);
    JP.upsertRow(job);
  }

  function stopStream() {
    if (stream) stream.close();
    stream = null;
  }

  // The job's event stream. The server ends each stream after a while and the EventSource
  // opens the next by itself (with Last-Event-ID); an answer that is not a stream (401, 404,
  // a proxy's error page) closes it for good, and then the long poll takes over and says why.
  function follow(job, token) {
    if (!window.EventSource) return poll(job, token);
    const source = new EventSource(`${jobUrl(job.id)}/events`);
    stream = source;
    let failures = 0;
    const fallBack = () => {
      source.close();
      if (stream === source) stream = null;
      if (token === watching) poll(current, token);
    };
    source.addEventListener("open", () => {
      failures = 0;
    });
    source.addEventListener("job", (event) => {
      if (token !== watching) return source.close();
      $("current-job").dataset.live = "events";
      clearError($("watch-error"));
      update(JSON.parse(event.data));
    });
    source.addEventListener("end", () => {
      source.close();
      if (stream === source) stream = null;
    });
    source.addEventListener("error", () => {
      if (token !== watching) return source.close();
      failures += 1;
      if (source.readyState === EventSource.CLOSED || failures >= 3) fallBack();
    });
  }

  // The long poll: ?wait with the ETag of what the page shows (without one the server would
  // wait for a change from whatever state it finds, missing the ones since the page's copy);
  // at most one request a second, however it answers. A wait ends early when the status
  // changes, but progress does not end it: while the job runs, wait one second so the bar
  // keeps moving.
  const waitSeconds = (job) => (job.status === "running" ? 1 : 10);
  async function poll(job, token) {
    $("current-job").dataset.live = "poll";
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
          update(job);
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

  JP.watch = function watch(job) {
    const token = ++watching;
    stopStream();
    clearError($("watch-error"));
    renderJob(job);
    history.replaceState(null, "", `#job-${job.id}`);
    if (!TERMINAL.has(job.status)) follow(job, token);
  };

  JP.watchById = async function watchById(id) {
    try {
      const { data } = await api("GET", jobUrl(id));
      JP.watch(data);
    } catch (err) {
      $("current-job").hidden = false;
      showError($("watch-error"), err);
    }
  };

  JP.currentJob = () => current;

  // Cancel and retry answer with the job; a retried job is followed again from queued.
  async function act(button, path) {
    if (!current) return;
    button.disabled = true;
    try {
      const { data } = await api("POST", `${jobUrl(current.id)}/${path}`);
      clearError($("watch-error"));
      JP.upsertRow(data);
      if (path === "retry") JP.watch(data);
      else renderJob(data);
    } catch (err) {
      showError($("watch-error"), err);
    } finally {
      button.disabled = false;
    }
  }

  JP.startJob = function startJob() {
    $("cancel-button").addEventListener("click", (e) => act(e.currentTarget, "cancel"));
    $("retry-button").addEventListener("click", (e) => act(e.currentTarget, "retry"));
    // A link to #job-<id> (pasted, or back and forward) opens that job.
    const openLinked = () => {
      const linked = /^#job-([0-9a-f-]{36})$/i.exec(window.location.hash);
      if (linked && !(current && current.id === linked[1])) JP.watchById(linked[1]);
    };
    window.addEventListener("hashchange", openLinked);
    openLinked();
  };
})();
