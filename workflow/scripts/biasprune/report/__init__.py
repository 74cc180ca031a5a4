"""The report layer, read by the figure, appendix and comparison jobs: `pages` (HTML: Jinja, table cells,
captions, embedded figures, the provenance stamp), `tables` (the registry of every table a page shows: title,
caption, columns), `placement` (where the selected components sit: per layer from the masks' stored counts,
by relative depth, head grids and overlaps), `figures` (every figure: the appendix's and the comparison's,
registered by name), `appendix` (one model's page) and `comparison` (several models' page and long tables)."""
