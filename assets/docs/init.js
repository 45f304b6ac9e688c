// Kept out of index.html so the page's Content-Security-Policy can refuse inline scripts.
// validatorUrl: null stops Swagger UI from sending the document to an online validator.
window.ui = SwaggerUIBundle({
  url: '/openapi.json',
  dom_id: '#ui',
  deepLinking: true,
  validatorUrl: null,
});
