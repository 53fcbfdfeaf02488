// Live refresh of the console's pages: every two seconds while the tab is visible, each
// element with data-live-url asks the server for its section and is replaced when that
// changed, until the server answers "x-console-live: stop" (nothing more will change).
// Written for this console; no library. A signed-out session (401) sends the page to the
// login form.
"use strict";

(function () {
  const PERIOD_MS = 2000;

  function follow(element) {
    const url = element.getAttribute("data-live-url");
    if (!url) {
      return;
    }
    let busy = false;
    let timer = null;
    // The version of the section the page was rendered with: unchanged, the server answers 204.
    let version = element.getAttribute("data-live-version") || "";

    async function refresh() {
      if (busy || document.hidden) {
        return;
      }
      busy = true;
      try {
        const response = await fetch(url, {
          credentials: "same-origin",
          // The server answers 204 when the section has not changed since this version.
          headers: { "x-console-fragment": "live", "x-console-version": version },
          cache: "no-store",
        });
        if (response.status === 401) {
          window.location.assign("/ui/login?expired=1&next=" +
            encodeURIComponent(window.location.pathname + window.location.search));
          return;
        }
        if (!response.ok) {
          element.setAttribute("data-live-error", String(response.status));
          return;
        }
        element.removeAttribute("data-live-error");
        version = response.headers.get("x-console-version") || "";
        if (response.status !== 204) {
          element.innerHTML = await response.text();
        }
        element.setAttribute("data-live-updated", new Date().toISOString());
        if (response.headers.get("x-console-live") === "stop") {
          window.clearInterval(timer);
          element.setAttribute("data-live-state", "stopped");
        }
      } catch (error) {
        element.setAttribute("data-live-error", String(error));
      } finally {
        busy = false;
      }
    }

    element.setAttribute("data-live-state", "following");
    timer = window.setInterval(refresh, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live-url]").forEach(follow);
  });
})();
