"""Event contracts as artifacts: the catalog exported for readers outside this repository.

`export` turns an app description into an AsyncAPI 3.0 document, one JSON Schema file per
event type and a Markdown catalog; `compat` compares two exported documents and names every
change that breaks a producer or a consumer; `cli` is `switchyard catalog export|check`.

`export` imports nothing from this repository at module level (it reads the app description
by its attributes), so `catalog check --against REF` can load it by file path next to the
app description of an older checkout that never had this package.
"""
