// The lists: the client's jobs (filtered by status and kind, through the list API's own
// query parameters), its workflows with their jobs, and its schedules with pause, resume and
// delete. Each is cursor-paginated by the API: "Load more" follows `next`.
"use strict";

(function () {
  const JP = window.JobPage;
  const { $, el, api, showError, clearError, when } = JP;

  // --- Jobs ---------------------------------------------------------------------------------

  let nextJobs = null;

  function filters() {
    return { status: $("filter-status").value, kind: $("filter-kind").value };
  }

  // A job the page learns of (submitted, followed) is listed only if the filters let it in.
  function matches(job) {
    const { status, kind } = filters();
    return (!status || job.status === status) && (!kind || job.kind === kind);
  }

  function watchButton(jobId, label) {
    const button = el("button", { type: "button", class: "watch", text: label || "Watch", "aria-label": `Watch job ${jobId}` });
    button.addEventListener("click", () => {
      // A list row carries no payload or result: fetch the job itself to show them.
      JP.watchById(jobId);
      $("current-job").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    return button;
  }

  function rowCells(job) {
    const percent = job.status === "succeeded" ? 100 : job.progress && job.progress.percent;
    return [
      el("td", { text: when(job.created_at) }),
      el("td", { text: job.kind }),
      el("td", {}, JP.statusBadge(job.status)),
      el("td", { text: percent === null || percent === undefined ? "—" : `${Math.round(percent)}%` }),
      el("td", {}, el("code", { title: job.id, text: job.id.slice(0, 8) }), " ", watchButton(job.id)),
    ];
  }

  JP.upsertRow = function upsertRow(job, { prepend = false } = {}) {
    const body = document.querySelector("#jobs-table tbody");
    let row = body.querySelector(`tr[data-job-id="${CSS.escape(job.id)}"]`);
    if (!matches(job)) {
      if (row) row.remove();
      $("jobs-empty").hidden = body.children.length > 0;
      return;
    }
    if (!row) {
      row = el("tr", { "data-job-id": job.id });
      if (prepend) body.prepend(row);
      else body.append(row);
    }
    row.replaceChildren(...rowCells(job));
    const current = JP.currentJob();
    row.classList.toggle("watching", current !== null && current.id === job.id);
    $("jobs-empty").hidden = true;
  };

  let jobsLoad = 0; // a newer load (the filters changed) makes an older answer moot
  async function loadJobs({ more = false } = {}) {
    const load = ++jobsLoad;
    const button = $("load-more");
    const errorBox = $("list-error");
    button.disabled = true;
    let url = JP.urls.jobs;
    if (more && nextJobs) url = nextJobs;
    else {
      const query = new URLSearchParams(Object.entries(filters()).filter(([, v]) => v));
      if ([...query].length) url += `?${query}`;
    }
    try {
      const { data } = await api("GET", url);
      if (load !== jobsLoad) return;
      if (!more) document.querySelector("#jobs-table tbody").replaceChildren();
      for (const job of data.results) JP.upsertRow(job);
      nextJobs = data.next ? JP.sameOrigin(data.next) : null;
      button.hidden = !nextJobs;
      const empty = $("jobs-empty");
      empty.textContent = filters().status || filters().kind ? "No jobs match these filters." : "No jobs yet.";
      empty.hidden = document.querySelectorAll("#jobs-table tbody tr").length > 0;
      clearError(errorBox);
    } catch (err) {
      if (load === jobsLoad) showError(errorBox, err);
    } finally {
      if (load === jobsLoad) button.disabled = false;
    }
  }

  // The kind filter offers the catalogue's kinds (form.js calls this once they are loaded).
  JP.kindsLoaded = function kindsLoaded(kinds) {
    const select = $("filter-kind");
    const chosen = select.value;
    select.replaceChildren(el("option", { value: "", text: "Any kind" }), ...kinds.map((k) => el("option", { value: k.name, text: k.name })));
    select.value = chosen;
  };

  // --- Workflows ----------------------------------------------------------------------------

  function workflowJobs(workflow) {
    const rows = workflow.jobs.map((job) =>
      el(
        "tr",
        { "data-job-id": job.id },
        el("td", {}, el("code", { text: job.ref })),
        el("td", { text: job.kind }),
        el("td", {}, JP.statusBadge(job.status)),
        el("td", { text: job.depends_on.length ? `after ${job.depends_on.join(", ")}` : "—" }),
        el("td", {}, watchButton(job.id)),
      ),
    );
    const head = el("tr", {}, ...["Ref", "Kind", "Status", "Depends on", ""].map((t) => el("th", { scope: "col", text: t })));
    return el("table", { class: "nested" }, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function workflowRow(workflow) {
    const detail = el("tr", { class: "workflow-jobs", hidden: true }, el("td", { colspan: 5 }));
    const toggle = el("button", { type: "button", class: "show-jobs", text: `Jobs (${workflow.total})`, "aria-expanded": "false" });
    toggle.addEventListener("click", async () => {
      const open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", String(!open));
      detail.hidden = open;
      if (open) return;
      const cell = detail.firstChild;
      cell.replaceChildren(el("p", { class: "hint", text: "Loading…" }));
      try {
        const { data } = await api("GET", `${JP.urls.workflows}/${encodeURIComponent(workflow.id)}`);
        cell.replaceChildren(workflowJobs(data));
      } catch (err) {
        const box = el("div", { class: "error", role: "alert" });
        showError(box, err);
        cell.replaceChildren(box);
      }
    });
    const actions = el("td", { class: "actions-cell" }, toggle);
    if (workflow.links && workflow.links.cancel) {
      const cancel = el("button", { type: "button", class: "cancel-workflow", text: "Cancel" });
      cancel.addEventListener("click", () => workflowCancel(workflow, cancel));
      actions.append(" ", cancel);
    }
    const row = el(
      "tr",
      { "data-workflow-id": workflow.id },
      el("td", { text: when(workflow.created_at) }),
      el("td", { text: workflow.name || "(no name)" }),
      el("td", {}, JP.statusBadge(workflow.status)),
      el("td", { text: when(workflow.finished_at) }),
      actions,
    );
    return [row, detail];
  }

  async function workflowCancel(workflow, button) {
    if (!window.confirm(`Cancel workflow ${workflow.name || workflow.id}? Jobs not started never run.`)) return;
    button.disabled = true;
    try {
      await api("POST", `${JP.urls.workflows}/${encodeURIComponent(workflow.id)}/cancel`);
      clearError($("workflows-error"));
      loadWorkflows();
    } catch (err) {
      showError($("workflows-error"), err);
      button.disabled = false;
    }
  }

  const loadWorkflows = pagedTable("workflows", JP.urls.workflows, workflowRow);

  // --- Schedules ----------------------------------------------------------------------------

  function scheduleRow(schedule) {
    const toggle = el("button", { type: "button", class: "toggle-schedule", text: schedule.enabled ? "Pause" : "Resume" });
    toggle.addEventListener("click", () => scheduleEnable(schedule, !schedule.enabled, toggle));
    const remove = el("button", { type: "button", class: "delete-schedule", text: "Delete" });
    remove.addEventListener("click", () => scheduleDelete(schedule, remove));
    const last = schedule.last_job ? watchButton(schedule.last_job, "Last job") : el("span", { class: "hint", text: "none yet" });
    return el(
      "tr",
      { "data-schedule-id": schedule.id },
      el("td", { text: schedule.kind }),
      el("td", { text: schedule.description || schedule.cron || `every ${schedule.every_seconds} s` }),
      el("td", {}, JP.statusBadge(schedule.enabled ? "active" : "paused")),
      el("td", { class: "next-run", text: schedule.enabled ? when(schedule.next_run_at) : "— (paused)" }),
      el("td", {}, last, schedule.last_error ? el("p", { class: "hint", text: schedule.last_error }) : null),
      el("td", { class: "actions-cell" }, toggle, " ", remove),
    );
  }

  function scheduleUrl(schedule) {
    return `${JP.urls.schedules}/${encodeURIComponent(schedule.id)}`;
  }

  async function scheduleEnable(schedule, enabled, button) {
    button.disabled = true;
    try {
      const { data } = await api("PATCH", scheduleUrl(schedule), { body: { enabled } });
      const row = document.querySelector(`#schedules-table tr[data-schedule-id="${CSS.escape(schedule.id)}"]`);
      if (row) row.replaceWith(scheduleRow(data));
      clearError($("schedules-error"));
    } catch (err) {
      showError($("schedules-error"), err);
      button.disabled = false;
    }
  }

  async function scheduleDelete(schedule, button) {
    if (!window.confirm(`Delete the ${schedule.kind} schedule? The jobs it made stay.`)) return;
    button.disabled = true;
    try {
      await api("DELETE", scheduleUrl(schedule));
      const row = document.querySelector(`#schedules-table tr[data-schedule-id="${CSS.escape(schedule.id)}"]`);
      if (row) row.remove();
      $("schedules-empty").hidden = document.querySelectorAll("#schedules-table tbody tr").length > 0;
      clearError($("schedules-error"));
    } catch (err) {
      showError($("schedules-error"), err);
      button.disabled = false;
    }
  }

  const loadSchedules = pagedTable("schedules", JP.urls.schedules, (schedule) => [scheduleRow(schedule)]);

  // A table of the caller's workflows or schedules (#NAME-table, with #NAME-more, -empty and
  // -error beside it): its first page, or with {more: true} the next one by the API's cursor.
  function pagedTable(name, url, rowsOf) {
    let next = null;
    return async function load({ more = false } = {}) {
      const body = document.querySelector(`#${name}-table tbody`);
      try {
        const { data } = await api("GET", more && next ? next : url);
        if (!more) body.replaceChildren();
        for (const item of data.results) body.append(...rowsOf(item));
        next = data.next ? JP.sameOrigin(data.next) : null;
        $(`${name}-more`).hidden = !next;
        $(`${name}-empty`).hidden = body.children.length > 0;
        clearError($(`${name}-error`));
      } catch (err) {
        showError($(`${name}-error`), err);
      }
    };
  }

  JP.startLists = function startLists() {
    $("filter-status").replaceChildren(
      el("option", { value: "", text: "Any status" }),
      ...JP.STATUSES.map((s) => el("option", { value: s, text: s })),
    );
    $("filter-status").addEventListener("change", () => loadJobs());
    $("filter-kind").addEventListener("change", () => loadJobs());
    $("load-more").addEventListener("click", () => loadJobs({ more: true }));
    $("refresh-button").addEventListener("click", () => loadJobs());
    $("workflows-more").addEventListener("click", () => loadWorkflows({ more: true }));
    $("workflows-refresh").addEventListener("click", () => loadWorkflows());
    $("schedules-more").addEventListener("click", () => loadSchedules({ more: true }));
    $("schedules-refresh").addEventListener("click", () => loadSchedules());
    loadJobs();
    loadWorkflows();
    loadSchedules();
  };
})();
