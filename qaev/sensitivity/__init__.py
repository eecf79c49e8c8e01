"""Per-layer sensitivity: measured probes (:mod:`.probes`), free proxies (:mod:`.proxy`),
the greedy lowering path over them (:mod:`.lowering`) and how a search is seeded from it
(:mod:`.seeding`)."""
