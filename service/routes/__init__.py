"""HTTP routes, one module per area: search, gallery, health (and the search page)."""
