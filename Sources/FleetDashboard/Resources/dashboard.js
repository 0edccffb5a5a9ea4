// mcpfleet dashboard: renders /api/v1 data and keeps it live through server-sent events
// (/api/v1/events). Read-only: it shows the CLI commands that change a rollout, never buttons.
// Everything from the API is inserted as text (textContent), never as HTML.
"use strict";

(function () {
  const main = document.getElementById("main");
  const liveBadge = document.getElementById("live");
  const context = document.getElementById("context");
  const serverMatch = location.pathname.match(/^\/ui\/servers\/([^/]+)\/?$/);
  const serverName = serverMatch ? decodeURIComponent(serverMatch[1]) : null;
  let offsetMs = 0; // server clock − browser clock, from the last view's generatedAt
  let lastView = null;

  function el(tag, attrs, ...children) {
    const node = tag === "svg" || attrs && attrs.svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "svg" || v === null || v === undefined) continue;
      if (k === "text") node.textContent = v;
      else if (k === "width") node.style.width = v; // CSSOM: allowed by the page's CSP, unlike style=""
      else node.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }
  const svg = (tag, attrs) => el(tag, Object.assign({ svg: true }, attrs));
  const phase = (p) => el("span", { class: "badge phase-" + (p || "absent"), "data-phase": p || "" }, p || "not running");
  const time = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
  function left(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return s >= 60 ? Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s" : s + "s";
  }

  function shareBar(revisions) {
    return el("div", { class: "shares" },
      el("div", { class: "bar", title: "share of replicas" },
        revisions.map((r) => el("span", { class: r.role, width: r.sharePercent + "%" }))),
      el("div", { class: "muted mono" }, revisions.map((r) => r.revision + " " + r.sharePercent + "%").join(" · ")));
  }

  function stepText(row) {
    const r = row.rollout;
    if (!r) return "";
    return r.strategy + " " + r.stepLabel + " → " + r.revision;
  }

  // ---- fleet page ----
  function renderFleet(view) {
    context.textContent = "environment " + (view.environment || "–") + " (" + (view.driver || "–") + ")" +
      (view.syncedCommit ? " · synced commit " + view.syncedCommit.slice(0, 12) + (view.syncedCommit.endsWith("-dirty") ? " + uncommitted changes" : "") : "") +
      (view.controller.alive ? "" : " · " + (view.controller.note || "no controller"));
    const byTenant = new Map();
    for (const s of view.servers) {
      const t = s.tenant || "–";
      if (!byTenant.has(t)) byTenant.set(t, []);
      byTenant.get(t).push(s);
    }
    const cards = [];
    for (const [tenant, servers] of [...byTenant.entries()].sort()) {
      cards.push(el("section", { class: "card tenant", "data-tenant": tenant },
        el("h2", {}, "tenant ", el("code", {}, tenant)),
        el("table", {},
          el("thead", {}, el("tr", {}, ["server", "phase", "ready", "revisions", "rollout", "endpoint", "notes"].map((h) => el("th", {}, h)))),
          el("tbody", {}, servers.map((s) => el("tr", { "data-server": s.name },
            el("td", {}, el("a", { href: "/ui/servers/" + encodeURIComponent(s.name) }, s.name)),
            el("td", {}, phase(s.phase)),
            el("td", { class: "mono" }, s.readyReplicas + "/" + (s.desiredReplicas ?? s.totalReplicas)),
            el("td", {}, s.revisions.length ? shareBar(s.revisions) : el("span", { class: "muted" }, "–")),
            el("td", { class: "rollout-step" }, stepText(s), s.rollout ? el("div", { class: "muted countdown-small", "data-ends": s.rollout.pauseEndsAt ?? "" }) : null,
              s.analysis ? el("div", { class: "muted" }, "analysis " + s.analysis.taken + " of " + s.analysis.count + ", " + s.analysis.passed + " passed") : null),
            el("td", { class: "mono" }, s.endpoint || "–"),
            el("td", {}, [s.notes.join("; "), s.message ? el("div", { class: "muted" }, s.message) : null])))))));
    }
    const notes = view.notes.length || view.controller.note
      ? el("section", { class: "card" }, el("h2", {}, "Notes"), el("ul", { class: "notes" }, view.notes.concat(view.controller.note ? [view.controller.note] : []).map((n) => el("li", {}, n))))
      : null;
    const events = view.events.length
      ? el("section", { class: "card", id: "events" }, el("h2", {}, "Last events"),
        el("table", {}, el("thead", {}, el("tr", {}, ["time", "server", "action", "revision", "outcome", "reason"].map((h) => el("th", {}, h)))),
          el("tbody", {}, view.events.map((e) => el("tr", {},
            el("td", { class: "muted" }, time(e.lastTime || e.time)), el("td", {}, view.servers.some((s) => s.name === e.server) ? el("a", { href: "/ui/servers/" + encodeURIComponent(e.server) }, e.server) : e.server),
            el("td", {}, e.action), el("td", { class: "mono" }, e.revision || "–"), el("td", {}, e.outcome + (e.repeats ? " (×" + (e.repeats + 1) + ")" : "")),
            el("td", {}, e.reason))))))
      : null;
    main.replaceChildren(el("h1", {}, "Fleet"), ...cards, notes || "", events || "");
    tick();
  }

  // ---- server page ----
  function analysisChart(a) {
    const w = 600, h = 120, pad = 24, left0 = 90;
    const g = svg("svg", { class: "chart", viewBox: "0 0 " + w + " " + h, role: "img", "aria-label": "analysis measurements" });
    const n = Math.max(a.count, a.measurements.length, 1);
    const x = (i) => left0 + (i + 0.5) * ((w - left0 - pad) / n);
    const rate = a.successRateObjective;
    // Success rate on a scale from (objective − 5 points) to 100 %, else pass/fail as high/low dots.
    const lo = rate !== null && rate !== undefined ? Math.max(0, rate - 0.05) : 0;
    const y = (v) => h - pad - ((v - lo) / (1 - lo)) * (h - 2 * pad);
    if (rate !== null && rate !== undefined) {
      g.appendChild(svg("line", { class: "objective", x1: left0, x2: w - pad, y1: y(rate), y2: y(rate) }));
      g.appendChild(svg("text", { x: 2, y: y(rate) + 12 })).textContent = "objective " + (rate * 100).toFixed(2) + "%";
    }
    a.measurements.forEach((m, i) => {
      const v = m.successRate ?? (m.result === "pass" ? 1 : lo);
      const c = svg("circle", { class: m.result, cx: x(i), cy: y(Math.max(lo, Math.min(1, v))), r: 6 });
      c.appendChild(svg("title", {})).textContent = "#" + (i + 1) + " " + m.result + (m.successRate != null ? " · success " + (m.successRate * 100).toFixed(2) + "%" : "");
      g.appendChild(c);
      g.appendChild(svg("text", { x: x(i) - 4, y: h - 6 })).textContent = String(i + 1);
    });
    return g;
  }

  function renderServer(d) {
    const s = d.server;
    context.textContent = "environment " + (d.environment || "–") + " · server " + s.name;
    const r = s.rollout;
    const blocks = [];
    blocks.push(el("h1", {}, el("a", { href: "/ui" }, "Fleet"), " / ", s.name, phase(s.phase)));
    blocks.push(el("div", { class: "grid" },
      el("section", { class: "card", id: "revisions" },
        el("h2", {}, "Revisions"),
        el("table", {}, el("thead", {}, el("tr", {}, ["revision", "version", "ready", "share", "role"].map((h) => el("th", {}, h)))),
          el("tbody", {}, s.revisions.map((v) => el("tr", { "data-revision": v.revision, "data-role": v.role },
            el("td", { class: "mono" }, v.revision), el("td", {}, v.version || "–"), el("td", { class: "mono" }, v.ready + "/" + v.replicas),
            el("td", {}, el("div", { class: "bar" }, el("span", { class: v.role, width: v.sharePercent + "%" })), v.sharePercent + "% of replicas"),
            el("td", {}, v.role === "target" ? "new (rollout target)" : v.role === "serving" ? "serving" : "old"))))),
        el("p", { class: "muted" }, "ready " + s.readyReplicas + " of " + (s.desiredReplicas ?? s.totalReplicas) + " desired" +
          (s.desiredRevision ? " · desired revision " + s.desiredRevision : "") + (s.endpoint ? " · " + s.endpoint : ""))),
      el("section", { class: "card", id: "rollout" },
        el("h2", {}, "Rollout"),
        r ? [
          el("div", { id: "rollout-step", "data-step": r.step }, r.strategy + " " + r.stepLabel + " → " + r.revision + " (" + r.phase + ")"),
          el("ol", { class: "steps" }, r.steps.map((st) => el("li", { class: st.state },
            el("strong", {}, st.label), el("div", { class: "muted" },
              (st.weight != null ? st.weight + "% · " : "") + st.goal + " replica" + (st.goal === 1 ? "" : "s") +
              (st.pause ? " · pause " + st.pause : "") + (st.analysis ? " · analysis" : ""))))),
          el("h3", {}, "Pause"),
          el("div", { id: "pause-countdown", class: "countdown", "data-ends": r.pauseEndsAt ?? "", "data-remaining": r.pauseRemainingMs ?? "" },
            r.heldByOperator ? "held by an operator" + (r.pauseRemainingMs != null ? " (" + left(r.pauseRemainingMs) + " left when resumed)" : "")
              : r.waitingForPromotion ? "waiting for promote" : r.pauseEndsAt ? "" : "–"),
        ] : el("p", { class: "muted", id: "rollout-step" }, "no rollout in progress" + (s.message ? " — " + s.message : "")),
        s.message && r ? el("p", { class: "muted" }, s.message) : null)));

    const a = d.analysis;
    blocks.push(el("section", { class: "card", id: "analysis" },
      el("h2", {}, "Analysis"),
      a ? [
        el("p", {}, "SLO ", el("code", {}, a.slo), " via ", a.provider, ": ", a.measurements.length + " of " + a.count + " measurements",
          a.verdict ? " · verdict " + a.verdict : "", " · more than " + a.failureLimit + " failed fails the rollout",
          a.successRateObjective != null ? " · success rate ≥ " + (a.successRateObjective * 100).toFixed(2) + "%" : "",
          a.latencyP95MsObjective != null ? " · p95 ≤ " + a.latencyP95MsObjective + " ms" : ""),
        analysisChart(a),
        el("table", {}, el("thead", {}, el("tr", {}, ["#", "result", "success rate", "p95 latency", "detail", "time"].map((h) => el("th", {}, h)))),
          el("tbody", {}, a.measurements.map((m, i) => el("tr", { class: "measurement", "data-result": m.result },
            el("td", {}, String(i + 1)), el("td", { class: "result-" + m.result }, m.result),
            el("td", { class: "mono" }, m.successRate != null ? (m.successRate * 100).toFixed(2) + "%" + (a.successRateObjective != null ? " (≥ " + (a.successRateObjective * 100).toFixed(2) + "%)" : "") : "–"),
            el("td", { class: "mono" }, m.latencyP95Ms != null ? m.latencyP95Ms.toFixed(0) + " ms" + (a.latencyP95MsObjective != null ? " (≤ " + a.latencyP95MsObjective + " ms)" : "") : "–"),
            el("td", {}, m.detail || ""), el("td", { class: "muted" }, m.time ? time(m.time) : "–"))))),
      ] : el("p", { class: "muted" }, "no analysis in progress")));

    blocks.push(el("section", { class: "card", id: "commands" },
      el("h2", {}, "Commands"),
      el("p", { class: "muted" }, "This page changes nothing. Run these where the manifests are (each is audited):"),
      d.commands.map((c) => el("div", { class: c.applies ? "" : "cmd-inactive", "data-action": c.action },
        el("strong", {}, c.action), " — ", c.effect, c.applies ? "" : " (not applicable now)", el("pre", { class: "cmd" }, c.command)))));

    blocks.push(el("section", { class: "card", id: "instances" },
      el("h2", {}, "Instances"),
      el("table", {}, el("thead", {}, el("tr", {}, ["instance", "revision", "state", "healthy", "port", "restarts", "reason"].map((h) => el("th", {}, h)))),
        el("tbody", {}, d.instances.map((i) => el("tr", {},
          el("td", { class: "mono" }, i.id), el("td", { class: "mono" }, i.revision), el("td", {}, i.state), el("td", {}, i.healthy ? "yes" : "no"),
          el("td", { class: "mono" }, i.port ?? "–"), el("td", {}, i.restarts ?? "–"), el("td", {}, i.reason || "")))))));

    blocks.push(el("section", { class: "card", id: "contract" },
      el("h2", {}, "Tool contract"),
      d.contract ? [el("p", {}, d.contract.digest ? ["digest ", el("code", {}, d.contract.digest)] : ""),
        el("ul", {}, d.contract.tools.map((t) => el("li", {}, el("code", {}, t))))]
        : el("p", { class: "muted" }, "no contract recorded yet for the serving revision (recorded at its first healthy probe)")));

    blocks.push(el("section", { class: "card", id: "history" },
      el("h2", {}, "History"),
      el("table", {}, el("thead", {}, el("tr", {}, ["revision", "version", "created", "outcome", "reason", "commit", "evidence"].map((h) => el("th", {}, h)))),
        el("tbody", {}, d.history.map((h) => el("tr", { "data-outcome": h.outcome },
          el("td", { class: "mono" }, h.revision), el("td", {}, h.version), el("td", { class: "muted" }, time(h.createdAt)),
          el("td", {}, el("span", { class: "badge phase-" + (h.outcome === "promoted" ? "stable" : h.outcome === "pending" ? "progressing" : h.outcome) }, h.outcome)),
          el("td", {}, h.reason || ""), el("td", { class: "mono" }, h.manifestCommit ? h.manifestCommit.slice(0, 12) : "–"),
          el("td", { class: "mono" }, h.evidence ? [h.evidence.signedBy ? "signed by " + h.evidence.signedBy : "unsigned",
            h.evidence.artifactDigest ? " · " + h.evidence.artifactDigest.slice(0, 19) + "…" : "",
            h.evidence.scan ? " · " + h.evidence.scan.scanner + ": " + h.evidence.scan.critical + " critical, " + h.evidence.scan.high + " high" : "",
            h.evidence.provenanceVerified ? " · provenance verified" : ""].join("") : "–")))))));

    blocks.push(el("section", { class: "card", id: "audit" },
      el("h2", {}, "Audit trail"),
      el("table", {}, el("thead", {}, el("tr", {}, ["time", "action", "revision", "outcome", "reason", "commit"].map((h) => el("th", {}, h)))),
        el("tbody", {}, d.audit.map((e) => el("tr", {},
          el("td", { class: "muted" }, time(e.lastTime || e.time)), el("td", {}, e.action), el("td", { class: "mono" }, e.revision || "–"),
          el("td", {}, e.outcome + (e.repeats ? " (×" + (e.repeats + 1) + ")" : "")), el("td", {}, e.reason),
          el("td", { class: "mono" }, e.manifestCommit ? e.manifestCommit.slice(0, 12) : "–")))))));
    main.replaceChildren(...blocks);
    tick();
  }

  // Countdowns run on the page's own clock between events (nothing is fetched for them).
  function tick() {
    const now = Date.now() + offsetMs;
    for (const node of document.querySelectorAll("[data-ends]")) {
      const ends = Number(node.getAttribute("data-ends"));
      if (!ends) continue;
      const text = left(ends - now) + " left";
      node.textContent = node.id === "pause-countdown" ? "pause: " + text : "pause " + text;
      node.setAttribute("data-remaining", String(Math.max(0, ends - now)));
    }
  }
  setInterval(tick, 1000);

  function show(view) {
    lastView = view;
    offsetMs = view.generatedAt - Date.now();
    if (serverName) renderServer(view); else renderFleet(view);
    document.body.setAttribute("data-generated", String(view.generatedAt));
  }

  function connect() {
    const url = "/api/v1/events" + (serverName ? "?server=" + encodeURIComponent(serverName) : "");
    const source = new EventSource(url);
    source.onopen = () => { liveBadge.textContent = "live"; liveBadge.className = "live open"; };
    source.onerror = () => { liveBadge.textContent = "reconnecting…"; liveBadge.className = "live closed"; };
    source.addEventListener(serverName ? "server" : "fleet", (e) => show(JSON.parse(e.data)));
    source.addEventListener("gone", () => {
      main.replaceChildren(el("h1", {}, el("a", { href: "/ui" }, "Fleet"), " / ", serverName), el("p", { class: "muted" }, "no server " + serverName + " is desired or running"));
    });
    source.addEventListener("problem", (e) => {
      const p = JSON.parse(e.data);
      liveBadge.textContent = "error: " + p.error; liveBadge.className = "live closed";
    });
  }
  if (serverName) document.getElementById("api-link").setAttribute("href", "/api/v1/servers/" + encodeURIComponent(serverName));
  window.mcpfleetDashboard = { loadedAt: Date.now(), last: () => lastView };
  connect();
})();
