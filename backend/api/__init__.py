"""The monitor API: routes, the hand-written OpenAPI document, tenancy rules."""
