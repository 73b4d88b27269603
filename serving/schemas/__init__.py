"""Request and response bodies, one module per API dialect (``inference_api``, ``openai``,
``tei``), the bodies every route shares (``operations``) and the text checks they all
apply (``text``). Shared by the HTTP routes, the handle API and the tests; no Ray, no
FastAPI."""
