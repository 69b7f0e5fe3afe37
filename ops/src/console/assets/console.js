// The console's live updates. An element with data-poll="URL" has URL
// fetched every 2 s; the answer is JSON whose "live" object maps keys to
// texts, and each element inside with data-live="KEY" gets that text (as
// text, never as markup) and data-value="TEXT" for the stylesheet. An
// element marked data-live-hide-empty is hidden while its text is empty.
// An answer with "done": true stops the polling.
"use strict";

(function () {
  var PERIOD_MS = 2000;

  function apply(root, live) {
    var nodes = root.querySelectorAll("[data-live]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var key = node.getAttribute("data-live");
      if (!Object.prototype.hasOwnProperty.call(live, key)) {
        continue;
      }
      var text = String(live[key]);
      if (node.textContent !== text) {
        node.textContent = text;
      }
      node.setAttribute("data-value", text);
      if (node.hasAttribute("data-live-hide-empty")) {
        node.hidden = text === "";
      }
    }
  }

  function status(root, text) {
    var node = root.querySelector("[data-poll-status]");
    if (node) {
      node.textContent = text;
    }
  }

  function poll(root) {
    var url = root.getAttribute("data-poll");
    // The next poll is set once this one has ended: a slow answer never
    // piles requests up.
    function tick() {
      var again = true;
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status === 401) {
            again = false;
            throw new Error("signed out: reload the page to sign in again");
          }
          if (!response.ok) {
            throw new Error("the console answered " + response.status);
          }
          return response.json();
        })
        .then(function (body) {
          apply(root, body.live || {});
          status(root, "Updated " + new Date().toLocaleTimeString());
          again = body.done !== true;
        })
        .catch(function (error) {
          status(root, "Live updates failed: " + error.message);
        })
        .then(function () {
          if (again) {
            window.setTimeout(tick, PERIOD_MS);
          }
        });
    }
    window.setTimeout(tick, PERIOD_MS);
  }

  function start() {
    var roots = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < roots.length; i++) {
      poll(roots[i]);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
