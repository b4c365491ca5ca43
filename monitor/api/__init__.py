"""The Prime Training API as the monitor speaks it: the async client (client) with its answer and
body checks (answer, body), the error classes (errors), the spec's models (models), Retry-After
(retry_after), run-id addressing (ids) and the vendored OpenAPI spec (spec/)."""
