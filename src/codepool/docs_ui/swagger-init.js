// codepool: starts Swagger UI on the page's #swagger-ui element, whose data-url names
// the OpenAPI document. A file of its own (not an inline script) so the docs pages can
// run under a Content-Security-Policy of script-src 'self'.
(function () {
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.dataset.url,
    dom_id: "#swagger-ui",
    deepLinking: true,
    persistAuthorization: false,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    validatorUrl: null,
  });
})();
