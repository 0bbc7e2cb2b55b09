
(function () {
  "use strict";
  // Renders the Report (see report.go) with DOM calls only: every value
  // from the server goes through textContent or a CSS colour of our own.
  var palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#86bcb6", "#d37295", "#a0cbe8"];
  var colors = {};
  var used = 0;
  var lastOK = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function clear(e) { while (e.firstChild) { e.removeChild(e.firstChild); } }
  function colorOf(name) {
    if (!Object.prototype.hasOwnProperty.call(colors, name)) {
      colors[name] = palette[used % palette.length];
      used++;
    }
    return colors[name];
  }
  // The fill level of a budget: n of max, as a percentage, and its class.
  function percent(n, max) { return Math.round(100 * n / max) + "%"; }
  function fill(n, max) { return max > 0 ? (n >= max ? "bad" : n >= 0.8 * max ? "warn" : "good") : ""; }
  function mib(b) { return (b / (1 << 20)).toFixed(1) + " MiB"; }
  function clock(t) {
    var d = new Date(t);
    return isNaN(d.getTime()) || d.getTime() <= 0 ? "" : d.toLocaleTimeString();
  }
  function when(t) {
    var d = new Date(t);
    return isNaN(d.getTime()) || d.getTime() <= 0 ? "" : d.toLocaleString();
  }
  function age(t, now) {
    if (!t) { return "never"; }
    var s = (new Date(now).getTime() - new Date(t).getTime()) / 1000;
    if (isNaN(s)) { return ""; }
    return s < 1 ? "just now" : Math.round(s) + " s ago";
  }
  function fact(dl, label, value, cls) {
    var d = el("div");
    d.appendChild(el("dt", "", label));
    d.appendChild(el("dd", cls, value));
    dl.appendChild(d);
  }

  function render(r) {
    document.title = "sessionmesh: " + r.node;
    $("node").textContent = r.node;
    $("summary").textContent = "mode " + r.mode + ", " + r.write_concern + " writes, report of " + clock(r.time);

    // Colours in name order first, so that every node's page agrees.
    r.members.slice().sort(function (a, b) { return a.name < b.name ? -1 : a.name > b.name ? 1 : 0; })
      .forEach(function (m) { colorOf(m.name); });

    var h = $("health");
    clear(h);
    fact(h, "fully replicated", r.fully_replicated ? "yes" : "no", r.fully_replicated ? "good" : "bad");
    fact(h, "under-replicated partitions", r.under_replicated < 0 ? "unknown" : r.under_replicated,
      r.under_replicated === 0 ? "good" : "bad");
    fact(h, "degraded peers", r.degraded_peers, r.degraded_peers === 0 ? "good" : "warn");
    fact(h, "ready", r.ready ? "yes" : "no", r.ready ? "good" : "warn");
    fact(h, "members", r.members.length, "");
    if (r.zones > 1) {
      fact(h, "partitions with copies in one zone only", r.single_zone_partitions + " (of " + r.zones + " zones)",
        r.single_zone_partitions === 0 ? "good" : "bad");
    }
    fact(h, "sessions here", r.sessions, "");
    fact(h, "sessions here", r.sessions + (r.max_sessions > 0 ? " of " + r.max_sessions + " (" + percent(r.sessions, r.max_sessions) + ")" : ""),
      fill(r.sessions, r.max_sessions));
    fact(h, "memory of sessions", mib(r.bytes) + (r.max_bytes > 0 ? " of " + mib(r.max_bytes) + " (" + percent(r.bytes, r.max_bytes) + ")" : ""),
      fill(r.bytes, r.max_bytes));
    if (r.overloaded > 0) { fact(h, "new sessions refused (over budget)", r.overloaded, "bad"); }

    var tb = $("members").tBodies[0];
    clear(tb);
    r.members.forEach(function (m) {
      var tr = el("tr", m.self ? "self" : "");
      tr.setAttribute("data-name", m.name);
      tr.setAttribute("data-state", m.state);
      var sw = el("span", "swatch");
      sw.style.backgroundColor = colorOf(m.name);
      var td = el("td");
      td.appendChild(sw);
      tr.appendChild(td);
      tr.appendChild(el("td", "", m.name + (m.self ? " (this node)" : "")));
      var state = m.state + (m.degraded ? ", degraded" : "");
      tr.appendChild(el("td", m.state === "alive" && !m.degraded ? "good" : "warn", state));
      tr.appendChild(el("td", "", m.addr));
      tr.appendChild(el("td", "", m.repl_addr || "-"));
      tr.appendChild(el("td", "", when(m.started)));
      tr.appendChild(el("td", "num", m.primary));
      tr.appendChild(el("td", "num", m.owned));
      tr.appendChild(el("td", "num", m.complete));
      tr.appendChild(el("td", "num", m.sessions));
      tr.appendChild(el("td", "", m.self ? "-" : age(m.last_status, r.time)));
      var off = m.clock_offset_seconds || 0;
      tr.appendChild(el("td", Math.abs(off) < 5 ? "num" : "num warn", m.self ? "-" : (off >= 0 ? "+" : "") + off.toFixed(3) + " s"));
      var proto = m.self ? "-" : (m.protocol ? "v" + m.protocol : "?") + (m.refusal ? ", refuses this node: " + m.refusal : "");
      tr.appendChild(el("td", m.refusal ? "warn" : "", proto));
      tb.appendChild(tr);
    });

    var dl = $("departed");
    clear(dl);
    r.departed.forEach(function (d) {
      var li = el("li", "", d.name + " (" + d.addr + "): gone since " + clock(d.since) + ", failed or left");
      li.setAttribute("data-name", d.name);
      dl.appendChild(li);
    });
    $("departed-box").hidden = r.departed.length === 0;

    var g = $("grid");
    var cells = g.children;
    r.partitions.forEach(function (p, i) {
      var c = cells[i];
      if (!c) { c = el("div", "cell"); g.appendChild(c); }
      var cls = "cell";
      if (p.owned) { cls += " owned"; }
      if (p.owned && !p.complete) { cls += " copying"; }
      if (!p.owned && p.sessions > 0) { cls += " handoff"; }
      c.className = cls;
      c.style.backgroundColor = p.owners.length ? colorOf(p.owners[0]) : "";
      var role = !p.owned ? (p.sessions > 0 ? "handing over" : "not owned")
        : (p.owners[0] === r.node ? "primary" : "backup") + (p.complete ? ", complete" : ", copying");
      c.title = "partition " + i + "\nowners: " + (p.owners.join(", ") || "none") +
        "\nhere: " + role + ", " + (p.sessions || 0) + " records";
    });
  }

  function online(ok, err) {
    var c = $("conn");
    if (ok) {
      lastOK = new Date();
      c.className = "conn";
      c.textContent = "live: updated every second";
    } else {
      c.className = "conn down";
      c.textContent = "cannot reach this node" + (lastOK ? " since " + lastOK.toLocaleTimeString() : "") +
        " (" + (err && err.message ? err.message : err) + "); retrying";
    }
  }

  function poll() {
    fetch(location.pathname + "?format=json", { cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(function (r) { render(r); online(true); })
      .catch(function (err) { online(false, err); })
      .then(function () { setTimeout(poll, 1000); });
  }

  render(JSON.parse($("initial").textContent));
  online(true);
  setTimeout(poll, 1000);
})();
