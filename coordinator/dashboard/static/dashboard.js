// Draws the definition graph with the vendored Mermaid, again whenever htmx
// swaps in a new one (the saga moved on). Labels come from the server escaped;
// securityLevel "strict" keeps Mermaid from running anything in them.
(function () {
  const dark = window.matchMedia("(prefers-color-scheme: dark)").matches;
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: dark ? "dark" : "default" });
  function draw() {
    const fresh = document.querySelectorAll("pre.mermaid:not([data-processed])");
    if (fresh.length) mermaid.run({ nodes: fresh });
  }
  document.addEventListener("htmx:afterSettle", draw);
  draw();
})();
