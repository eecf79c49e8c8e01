"""Activation calibration: statistics collected once (:mod:`.stats`), ranges per method."""
