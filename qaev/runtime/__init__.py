"""Running a search: the evaluation memo (:mod:`.store`), the run directory (:mod:`.rundir`),
parallel workers (:mod:`.parallel`, :mod:`.isolation`) and preparing candidates ahead
(:mod:`.prefetch`)."""
