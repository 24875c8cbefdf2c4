// codepool: starts Scalar on the page's #scalar element, whose data-url names the
// OpenAPI document. A file of its own (not an inline script) so the docs pages can run
// under a Content-Security-Policy of script-src 'self'. No web fonts and no proxy and none
// of Scalar's hosted extras: the page loads nothing from another host.
(function () {
  var el = document.getElementById("scalar");
  Scalar.createApiReference("#scalar", {
    url: el.dataset.url,
    withDefaultFonts: false,
    hideClientButton: true,
    // Hosted extras (AI agent, SDK generation, developer tools) need scalar.com.
    showDeveloperTools: "never",
    agent: { disabled: true },
  });
})();
