// The console's live updates. An element with data-poll="URL" has URL
// fetched every 2 s; the answer is JSON whose "live" object maps keys to
// texts, and each element inside with data-live="KEY" gets that text (as
// text, never as markup) and data-value="TEXT" for the stylesheet. An
// element marked data-live-hide-empty is hidden while its text is empty.
// An element whose key the answer no longer has says "no longer
// reported". When the answer has keys no element shows (rows measured
// since the page was made, such as a group whose first measurement had not
// ended), the page is fetched again and the polled element's content
// replaced by its new one: parsed as an inert document, never run. An
// answer with "done": true stops the polling.
"use strict";

(function () {
  var PERIOD_MS = 2000;

  var GONE = "no longer reported";

  // Updates the elements of root from live; the number of keys live has
  // that no element shows (rows that appeared since the page was made).
  function apply(root, live) {
    var nodes = root.querySelectorAll("[data-live]");
    var shown = {};
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      var key = node.getAttribute("data-live");
      shown[key] = true;
      var present = Object.prototype.hasOwnProperty.call(live, key);
      // A row whose measurement is gone is said so, never left stale.
      var text = present ? String(live[key]) : GONE;
      if (node.textContent !== text) {
        node.textContent = text;
      }
      node.setAttribute("data-value", text);
      if (node.hasAttribute("data-live-hide-empty")) {
        node.hidden = text === "" || text === GONE;
      }
    }
    var unseen = 0;
    for (var name in live) {
      if (Object.prototype.hasOwnProperty.call(live, name) && !shown[name]) {
        unseen += 1;
      }
    }
    return unseen;
  }

  function status(root, text) {
    var node = root.querySelector("[data-poll-status]");
    if (node) {
      node.textContent = text;
    }
  }

  // Replaces root's content with that of the same polled element in the
  // page fetched anew; resolves to false when the page has none.
  function refresh(root) {
    var url = root.getAttribute("data-poll");
    return fetch(window.location.href, {
      credentials: "same-origin",
      headers: { Accept: "text/html" }
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the console answered " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.querySelectorAll("[data-poll]");
        for (var i = 0; i < fresh.length; i++) {
          if (fresh[i].getAttribute("data-poll") === url) {
            var nodes = [];
            for (var n = fresh[i].firstChild; n; n = n.nextSibling) {
              nodes.push(document.importNode(n, true));
            }
            root.replaceChildren.apply(root, nodes);
            return true;
          }
        }
        return false;
      });
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
          again = body.done !== true;
          var live = body.live || {};
          var updated = function (note) {
            status(root, "Updated " + new Date().toISOString().slice(11, 19) + " UTC" + note);
          };
          if (apply(root, live) === 0) {
            updated("");
            return undefined;
          }
          return refresh(root).then(function (found) {
            apply(root, live);
            updated(found ? "" : "; new rows measured: reload the page to see them");
          });
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
