"""The curation API, one module per topic: rules, versions, exports, weak_imports."""
