// The dashboard's one script: render each snapshot the server sends on /dashboard/events.
// Plain DOM, no framework; text goes in through textContent only (job ids are the user's).
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const BUDGET_NAMES = { rpm: "requests/min", rpd: "requests/day", tpm: "tokens/min",
                         itpm: "input tokens/min", otpm: "output tokens/min" };

  // A page opened as /?token=T passes T on to its event stream (a browser cannot send a
  // bearer header from an EventSource).
  const token = new URLSearchParams(location.search).get("token");
  const eventsUrl = "dashboard/events" + (token ? "?token=" + encodeURIComponent(token) : "");

  function setText(id, value) {
    const element = $(id);
    if (element.textContent !== String(value)) element.textContent = value;
  }

  function meter(fill, value, limit) {
    const share = limit ? Math.min(1, value / limit) : 0;
    fill.style.width = (share * 100).toFixed(1) + "%";
    fill.classList.toggle("high", share >= 0.9);
  }

  function renderPace(name, value, limit, unit) {
    setText(name + "-per-minute", number.format(value));
    meter($(name + "-meter"), value, limit);
    setText(name + "-limit", limit ? "of " + number.format(limit) + " " + unit : "no limit");
  }

  function renderLimits(limits, learned) {
    const list = $("limits");
    const names = Object.keys(limits);
    if (!names.length) return;  // keep the "none yet" line
    list.replaceChildren(...names.map((name) => {
      const item = document.createElement("li");
      item.id = "limit-" + name;
      const origin = learned.includes(name) ? " (learned)" : "";
      item.textContent = name + " " + number.format(limits[name]) + " " +
        (BUDGET_NAMES[name] || "") + origin;
      return item;
    }));
  }

  function percent(job) {
    const settled = (job.done || 0) + (job.failed || 0);
    if (job.total) return Math.min(100, Math.floor((settled / job.total) * 100));
    return job.finished_at ? 100 : 0;
  }

  function jobRow(job) {
    const row = document.createElement("tr");
    row.dataset.jobId = job.id;
    row.className = "job status-" + String(job.status || "").toLowerCase();
    const cells = [];
    for (let i = 0; i < 6; i++) cells.push(document.createElement("td"));
    const id = document.createElement("code");
    id.textContent = job.id;
    cells[0].append(id);
    cells[1].textContent = job.status;
    cells[1].className = "status";
    const progress = document.createElement("div");
    progress.className = "progress";
    const bar = document.createElement("div");
    bar.className = "meter";
    const fill = document.createElement("div");
    fill.className = "fill";
    const pct = percent(job);
    fill.style.width = pct + "%";
    bar.append(fill);
    const label = document.createElement("span");
    label.className = "pct";
    label.textContent = pct + "%";
    progress.append(bar, label);
    cells[2].append(progress);
    cells[3].textContent = number.format(job.done || 0) + " / " +
      (job.total == null ? "?" : number.format(job.total));
    cells[4].textContent = number.format(job.failed || 0);
    // created_at is seconds since the epoch.
    cells[5].textContent = typeof job.created_at === "number"
      ? new Date(job.created_at * 1000).toLocaleTimeString() : "";
    row.append(...cells);
    return row;
  }

  function renderJobs(jobs) {
    $("jobs").tBodies[0].replaceChildren(...jobs.map(jobRow));
    $("no-jobs").hidden = jobs.length > 0;
  }

  function render(snapshot) {
    setText("model", snapshot.model + (snapshot.simulated ? " (simulator)" : ""));
    const limits = snapshot.limits || {};
    const pace = snapshot.per_minute;
    renderPace("requests", pace.requests, limits.rpm, "rpm");
    renderPace("tokens", pace.tokens, limits.tpm, "tpm");
    setText("queue-depth", snapshot.queue.waiting);
    setText("queue-refused", snapshot.queue.refused);
    setText("in-flight", snapshot.in_flight);
    setText("concurrency", snapshot.concurrency.current + " of " + snapshot.concurrency.max);
    setText("http-429", snapshot.http_429);
    setText("paused", snapshot.paused_s > 0 ? "paused " + snapshot.paused_s + " s" : "\u00a0");
    setText("retries", snapshot.retries);
    setText("done", snapshot.done);
    setText("failed", snapshot.failed);
    renderLimits(limits, snapshot.learned || []);
    renderJobs(snapshot.jobs || []);
  }

  function connection(live) {
    const badge = $("connection");
    badge.textContent = live ? "live" : "reconnecting…";
    badge.className = "badge " + (live ? "on" : "off");
  }

  function listen() {
    const source = new EventSource(eventsUrl);
    source.onmessage = (event) => {
      connection(true);
      render(JSON.parse(event.data));
    };
    source.onerror = () => {
      // A stream that ended is reopened by the EventSource itself; one refused (the
      // service stopped, a wrong token) is closed for good: try again a little later.
      if (source.readyState === EventSource.CLOSED) {
        connection(false);
        setTimeout(listen, 3000);
      }
    };
  }

  listen();
})();
