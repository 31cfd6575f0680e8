"""Where rows come from when a whole catalog runs over many customers: database tables
(:mod:`tagrules.sources.tables`, push-down through :mod:`tagrules.sql`) and retagging a table into a
store (:mod:`tagrules.sources.retag`, set-wise in :mod:`tagrules.sources._setwise`)."""
