// The client page: builds a form from each kind's input schema, submits jobs (uploading
// their files), follows one live and lists past jobs, workflows and schedules, all through
// the JSON API with the session cookie. The pieces: api.js (HTTP and DOM helpers), form.js
// (the submit form), job.js (the followed job), lists.js (the lists); this starts them.
"use strict";

(function () {
  const JP = window.JobPage;
  JP.startLists();
  JP.startForm();
  JP.startJob();
})();
